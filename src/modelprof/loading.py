"""Loading: turn ``pkg.mod:Net`` or ``path/file.py:Net`` and the input options into a model and its inputs."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map_only

from .errors import ModelError, UsageError


class Device(StrEnum):
    """Where the model runs. ``meta`` builds it with shapes only: no weights are allocated."""

    CPU = "cpu"
    CUDA = "cuda"
    META = "meta"


class DType(StrEnum):
    """Element types an input (or, for the float ones, the whole model) can be given."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT64 = "float64"
    INT64 = "int64"
    INT32 = "int32"
    BOOL = "bool"

    @property
    def torch(self) -> torch.dtype:
        return getattr(torch, self.value)


MODEL_DTYPES = (DType.FLOAT32, DType.FLOAT16, DType.BFLOAT16, DType.FLOAT64)


@dataclass(frozen=True)
class InputSpec:
    """One input described on the command line: ``[NAME=]SHAPE[:DTYPE[:HIGH]]``; the shape excludes the batch."""

    shape: tuple[int, ...]
    dtype: DType = DType.FLOAT32
    name: str | None = None
    high: int = 2

    def make(self, batch: int, device: torch.device | str, float_dtype: torch.dtype | None = None) -> torch.Tensor:
        """A random tensor of shape (batch, *shape): normal floats, or integers uniform in [0, high)."""
        shape = (batch, *self.shape)
        if self.dtype == DType.BOOL:
            return torch.randint(0, 2, shape, device=device).bool()
        if self.dtype in (DType.INT64, DType.INT32):
            return torch.randint(0, self.high, shape, device=device, dtype=self.dtype.torch)
        dtype = float_dtype if float_dtype is not None else self.dtype.torch
        return torch.randn(shape, device=device, dtype=dtype)


_SHAPE = re.compile(r"^\s*(\d+\s*([,x×]\s*\d+\s*)*)?$")


def parse_shape(text: str, option: str = "--shape") -> tuple[int, ...]:
    """``"3,500,500"`` (or ``3x500x500``) -> ``(3, 500, 500)``; the empty string is a per-sample scalar."""
    if not _SHAPE.match(text):
        raise UsageError(f"{option}: '{text}' is not a shape; write sizes separated by commas, e.g. 3,224,224")
    dims = tuple(int(d) for d in re.split(r"[,x×]", text.replace(" ", ""))) if text.strip() else ()
    if any(d <= 0 for d in dims):
        raise UsageError(f"{option}: '{text}' has a size of 0; every size must be a positive integer")
    return dims


def parse_input(text: str) -> InputSpec:
    """Parse ``--input [NAME=]SHAPE[:DTYPE[:HIGH]]``, e.g. ``captions=19:int64:10000``."""
    name = None
    body = text
    if "=" in text:
        name, body = text.split("=", 1)
        if not name.isidentifier():
            raise UsageError(f"--input: '{name}' is not a valid keyword argument name in '{text}'")
    parts = body.split(":")
    if len(parts) > 3:
        raise UsageError(f"--input: '{text}' has too many ':' parts; the form is [NAME=]SHAPE[:DTYPE[:HIGH]]")
    shape = parse_shape(parts[0], "--input")
    dtype = DType.FLOAT32
    if len(parts) > 1 and parts[1]:
        try:
            dtype = DType(parts[1])
        except ValueError:
            choices = ", ".join(d.value for d in DType)
            raise UsageError(f"--input: unknown dtype '{parts[1]}' in '{text}'; choose one of {choices}") from None
    high = 2
    if len(parts) > 2:
        if dtype not in (DType.INT64, DType.INT32):
            raise UsageError(f"--input: HIGH only applies to int64/int32 inputs, not {dtype} in '{text}'")
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise UsageError(f"--input: HIGH must be a positive integer, got '{parts[2]}' in '{text}'")
        high = int(parts[2])
    return InputSpec(shape=shape, dtype=dtype, name=name, high=high)


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """``--kwargs '{"num_classes": 10}'``: a JSON object, never evaluated as code."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--kwargs is not valid JSON ({exc.msg} at column {exc.colno}); "
                         """write a JSON object such as '{"num_classes": 10}'""") from None
    if not isinstance(value, dict):
        raise UsageError("--kwargs must be a JSON object such as '{\"num_classes\": 10}'")
    return value


# ----------------------------------------------------------------------------------------------------------------
# Resolving TARGET
# ----------------------------------------------------------------------------------------------------------------


def resolve(target: str, what: str = "TARGET") -> Any:
    """Import ``pkg.mod:Attr`` or ``path/to/file.py:Attr`` and return ``Attr`` (which may be dotted)."""
    if ":" not in target:
        raise UsageError(f"{what} '{target}' needs the form pkg.module:Name or path/to/file.py:Name")
    location, attr = target.rsplit(":", 1)
    if not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise UsageError(f"{what} '{target}': '{attr}' is not a Python name after the ':'")
    module = _import_file(location, what) if _looks_like_file(location) else _import_module(location, what)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            available = sorted(n for n in dir(module) if not n.startswith("_"))[:12]
            raise UsageError(f"{what} '{target}': '{location}' has no attribute '{attr}'"
                             f" (it has: {', '.join(available)})")
        obj = getattr(obj, part)
    return obj


def _looks_like_file(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def _import_file(location: str, what: str) -> Any:
    path = Path(location).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"{what}: file '{location}' does not exist")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the file's own imports of its neighbours work
    name = f"_modelprof_user_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModelError(f"importing '{location}' failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(location: str, what: str) -> Any:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # `modelprof stats mymodels:Net` from the folder that holds mymodels.py
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        if exc.name and (location == exc.name or location.startswith(exc.name + ".")):
            raise UsageError(f"{what}: no module named '{location}'; check the spelling, run from the folder that "
                             "holds it, or give a file path such as path/to/model.py:Net") from None
        raise ModelError(f"importing '{location}' failed: {exc}") from exc
    except Exception as exc:
        raise ModelError(f"importing '{location}' failed: {type(exc).__name__}: {exc}") from exc


def build_model(target: str, kwargs: dict[str, Any], device: Device = Device.CPU,
                dtype: DType | None = None) -> nn.Module:
    """The ``nn.Module`` that TARGET names: a module class (called with ``kwargs``), a factory, or an instance.

    With ``device=meta`` a class or factory is built under ``torch.device("meta")`` so no weights are allocated.
    """
    obj = resolve(target)
    if device == Device.CUDA and not torch.cuda.is_available():
        raise UsageError("--device cuda: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                         "use --device cpu or --device meta")
    if isinstance(obj, nn.Module):
        if kwargs:
            raise UsageError(f"--kwargs: '{target}' is already a module instance and takes no constructor arguments")
        model = obj
    elif callable(obj):
        builder = torch.device("meta") if device == Device.META else contextlib.nullcontext()
        model = _construct(obj, target, kwargs, builder)
    else:
        raise UsageError(f"'{target}' is a {type(obj).__name__}, not a model; point TARGET at an nn.Module "
                         "subclass, a function returning one, or a module instance")
    model = model.to(device.value)
    if dtype is not None:
        model = model.to(dtype.torch)
    return model


def _construct(factory: Callable, target: str, kwargs: dict[str, Any], context: Any) -> nn.Module:
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise UsageError(f"'{target}' cannot be called with --kwargs {json.dumps(kwargs)}: {exc}; "
                         """give its arguments as JSON, e.g. --kwargs '{"num_classes": 10}'""") from None
    except ValueError:
        pass  # no signature (a builtin): just try it
    try:
        with context:
            model = factory(**kwargs)
    except Exception as exc:
        raise ModelError(f"building '{target}' failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(f"'{target}' returned a {type(model).__name__}, not an nn.Module; point TARGET at a "
                         "model class, a function returning one, or a module instance")
    return model


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


def build_inputs(specs: Sequence[InputSpec], batch: int, device: torch.device | str,
                 float_dtype: torch.dtype | None = None) -> tuple[tuple, dict]:
    """Random ``(args, kwargs)`` for the specs, in call order: unnamed specs positional, named ones keywords."""
    args, kwargs = [], {}
    for spec in specs:
        tensor = spec.make(batch, device, float_dtype)
        if spec.name is None:
            args.append(tensor)
        else:
            kwargs[spec.name] = tensor
    return tuple(args), kwargs


def call_inputs_factory(target: str, batch: int, device: torch.device | str,
                        float_dtype: torch.dtype | None = None) -> tuple[tuple, dict]:
    """Call ``--inputs pkg.mod:make_inputs`` with the batch size and normalise what it returns to (args, kwargs).

    It may return a tensor, a tuple or list (positional), a dict (keywords) or an ``(args, kwargs)`` pair.
    """
    factory = resolve(target, "--inputs")
    if not callable(factory):
        raise UsageError(f"--inputs '{target}' is a {type(factory).__name__}, not a function of the batch size")
    try:
        value = factory(batch)
    except Exception as exc:
        raise ModelError(f"--inputs '{target}' failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(value, torch.Tensor):
        args, kwargs = (value,), {}
    elif isinstance(value, dict):
        args, kwargs = (), value
    elif (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple | list)
          and isinstance(value[1], dict)):
        args, kwargs = tuple(value[0]), value[1]
    elif isinstance(value, tuple | list):
        args, kwargs = tuple(value), {}
    else:
        raise UsageError(f"--inputs '{target}' returned a {type(value).__name__}; return a tensor, a tuple, "
                         "a dict or an (args, kwargs) pair")

    def place(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device)
        return t.to(float_dtype) if float_dtype is not None and t.is_floating_point() else t

    return tree_map_only(torch.Tensor, place, (args, kwargs))


@dataclass(frozen=True)
class Inputs:
    """How to build a model's inputs at any batch size: from specs, or from a user factory."""

    specs: tuple[InputSpec, ...] = ()
    factory: str | None = None

    def build(self, batch: int, device: torch.device | str,
              float_dtype: torch.dtype | None = None) -> tuple[tuple, dict]:
        """``(args, kwargs)`` for one call at this batch size."""
        if self.factory:
            return call_inputs_factory(self.factory, batch, device, float_dtype)
        return build_inputs(self.specs, batch, device, float_dtype)


def input_options(shape: str | None, inputs: Sequence[str], factory: str | None) -> Inputs:
    """Check and combine ``--shape``, ``--input`` and ``--inputs`` into one :class:`Inputs`."""
    given = sum(bool(x) for x in (shape, inputs, factory))
    if given == 0:
        raise UsageError("no inputs given; describe them with --shape 3,224,224, --input [NAME=]SHAPE[:DTYPE], "
                         "or --inputs module:make_inputs")
    if given > 1:
        raise UsageError("give only one of --shape, --input and --inputs (use several --input for several tensors)")
    if factory:
        return Inputs(factory=factory)
    if shape is not None:
        return Inputs(specs=(InputSpec(parse_shape(shape)),))
    return Inputs(specs=tuple(parse_input(x) for x in inputs))


class SingleTensorAdapter(nn.Module):
    """Wraps a multi-input model so tools that feed one tensor (thop, torchstat) can run it.

    The adapter owns the model and the description of its other inputs; ``forward(x)`` puts ``x`` at
    ``position`` among the positional inputs and builds all the others afresh with ``x``'s batch size, device
    and (for float inputs) dtype.

    >>> specs = [InputSpec((50, 2048)), InputSpec((50, 4)), InputSpec((19,), DType.INT64, high=1000)]
    >>> adapter = SingleTensorAdapter(model, specs)           # adapter(x) == model(x, boxes, captions)
    >>> thop.profile(adapter, inputs=(torch.randn(1, 50, 2048),))
    """

    def __init__(self, model: nn.Module, specs: Sequence[InputSpec], position: int = 0) -> None:
        super().__init__()
        positional = [s for s in specs if s.name is None]
        if not 0 <= position < len(positional):
            raise ValueError(f"position {position} is not one of the {len(positional)} positional inputs")
        self.model = model
        self.specs = tuple(specs)
        self.position = position

    def forward(self, x: torch.Tensor) -> Any:
        float_dtype = x.dtype if x.is_floating_point() else None
        args, kwargs = build_inputs(self.specs, x.shape[0], x.device, float_dtype)
        args = args[: self.position] + (x,) + args[self.position + 1:]
        return self.model(*args, **kwargs)


@dataclass(frozen=True)
class ModelSource:
    """Everything needed to build the model and its inputs again, in this process or in a child process."""

    target: str
    inputs: Inputs
    kwargs: dict[str, Any] = field(default_factory=dict)
    device: Device = Device.CPU
    dtype: DType | None = None
    channels_last: bool = False

    def build_model(self) -> nn.Module:
        """The model, on its device and dtype (and in channels-last memory format when asked)."""
        model = build_model(self.target, self.kwargs, self.device, self.dtype)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def build_inputs(self, batch: int) -> tuple[tuple, dict]:
        """``(args, kwargs)`` at this batch size; 4-D float inputs in channels-last when asked."""
        args, kwargs = self.inputs.build(batch, self.device.value, self.dtype.torch if self.dtype else None)
        if self.channels_last:
            def channels_last(t: torch.Tensor) -> torch.Tensor:
                return t.to(memory_format=torch.channels_last) if t.dim() == 4 and t.is_floating_point() else t

            args, kwargs = tree_map_only(torch.Tensor, channels_last, (args, kwargs))
        return args, kwargs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, to hand the source to a child process."""
        return {
            "target": self.target, "kwargs": self.kwargs, "device": self.device.value,
            "dtype": self.dtype.value if self.dtype else None, "channels_last": self.channels_last,
            "factory": self.inputs.factory,
            "specs": [{"shape": list(s.shape), "dtype": s.dtype.value, "name": s.name, "high": s.high}
                      for s in self.inputs.specs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSource:
        specs = tuple(InputSpec(tuple(s["shape"]), DType(s["dtype"]), s["name"], s["high"]) for s in d["specs"])
        return cls(target=d["target"], inputs=Inputs(specs=specs, factory=d["factory"]), kwargs=d["kwargs"],
                   device=Device(d["device"]), dtype=DType(d["dtype"]) if d["dtype"] else None,
                   channels_last=d["channels_last"])
