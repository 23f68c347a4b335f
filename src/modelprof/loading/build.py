"""Loading: turn ``pkg.mod:Net`` or ``path/file.py:Net`` and the input options into a model and its inputs."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map_only

from modelprof.errors import Hint, ModelError, UsageError, one_line
from modelprof.loading.hf import build_from_config, is_config_target
from modelprof.loading.source import MODEL_DTYPES, Device, DType, Inputs, InputSpec, ModelSource  # noqa: F401  (re-exported)

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
        raise ModelError(f"importing '{location}' failed: {type(exc).__name__}: {one_line(exc)}") from exc
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
        raise ModelError(f"importing '{location}' failed: {type(exc).__name__}: {one_line(exc)}") from exc


def build_model(target: str, kwargs: dict[str, Any], device: Device = Device.CPU, task: str | None = None
                ) -> nn.Module:
    """The ``nn.Module`` that TARGET names: a module class (called with ``kwargs``), a factory, an instance, or a
    ``transformers`` config (``config.json``, a folder holding one, ``hf:ORG/NAME``; the head from ``task``).

    With ``device=meta`` a class, factory or config is built under ``torch.device("meta")`` so no weights are
    allocated.
    """
    if device == Device.CUDA and not torch.cuda.is_available():
        raise UsageError("cuda: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False); use the cpu "
                         "or meta device", option="device")
    builder = torch.device("meta") if device == Device.META else contextlib.nullcontext()
    if is_config_target(target):
        if kwargs:
            raise UsageError("a config TARGET takes no constructor arguments; edit the config", option="kwargs")
        with builder:
            model = build_from_config(target, task)
        return model.to(device.value)
    if task is not None:
        raise UsageError("the task picks the head of a transformers config; TARGET is not one", option="task")
    obj = resolve(target)
    if isinstance(obj, nn.Module):
        if kwargs:
            raise UsageError(f"'{target}' is already a module instance and takes no constructor arguments",
                             option="kwargs")
        model = obj
    elif callable(obj):
        model = _construct(obj, target, kwargs, builder)
    else:
        raise UsageError(f"'{target}' is a {type(obj).__name__}, not a model; point TARGET at an nn.Module "
                         "subclass, a function returning one, or a module instance")
    return model.to(device.value)


def _construct(factory: Callable, target: str, kwargs: dict[str, Any], context: Any) -> nn.Module:
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise UsageError(f"'{target}' cannot be called with the arguments {json.dumps(kwargs)}: {exc}",
                         option="kwargs", hint=Hint.KWARGS) from None
    except ValueError:
        pass  # no signature (a builtin): just try it
    try:
        with context:
            model = factory(**kwargs)
    except Exception as exc:
        raise ModelError(f"building '{target}' failed: {type(exc).__name__}: {one_line(exc)}") from exc
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
    factory = resolve(target, "the inputs factory")
    if not callable(factory):
        raise UsageError(f"the inputs factory '{target}' is a {type(factory).__name__}, not a function of the "
                         "batch size")
    try:
        value = factory(batch)
    except Exception as exc:
        raise ModelError(f"the inputs factory '{target}' failed: {type(exc).__name__}: {one_line(exc)}") from exc
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
        raise UsageError(f"the inputs factory '{target}' returned a {type(value).__name__}; return a tensor, a "
                         "tuple, a dict or an (args, kwargs) pair")

    def place(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device)
        return t.to(float_dtype) if float_dtype is not None and t.is_floating_point() else t

    return tree_map_only(torch.Tensor, place, (args, kwargs))


class SingleTensorAdapter(nn.Module):
    """Wraps a multi-input model so tools that feed one tensor (thop, torchstat) can run it.

    The adapter owns the model and the description of its inputs; ``forward(x)`` puts ``x`` in the place of input
    ``fed`` (an index into ``specs``, positional or keyword; by default the first float input) and builds all the
    others afresh with ``x``'s batch size, device and (for float inputs) dtype.

    >>> specs = [InputSpec((50, 2048)), InputSpec((50, 4)), InputSpec((19,), DType.INT64, high=1000)]
    >>> adapter = SingleTensorAdapter(model, specs)           # adapter(x) == model(x, boxes, captions)
    >>> thop.profile(adapter, inputs=(torch.randn(1, 50, 2048),))
    """

    def __init__(self, model: nn.Module, specs: Sequence[InputSpec], fed: int | None = None) -> None:
        super().__init__()
        fed = self.first_float(specs) if fed is None else fed
        if fed is None or not 0 <= fed < len(specs):
            raise ValueError(f"input {fed} is not one of the {len(specs)} inputs (or none of them is a float)")
        self.model = model
        self.specs = tuple(specs)
        self.fed = fed

    @staticmethod
    def first_float(specs: Sequence[InputSpec]) -> int | None:
        """The index of the first float input, positional or keyword (None when there is none)."""
        return next((i for i, s in enumerate(specs) if s.dtype in MODEL_DTYPES), None)

    def forward(self, x: torch.Tensor) -> Any:
        float_dtype = x.dtype if x.is_floating_point() else None
        args, kwargs = build_inputs(self.specs, x.shape[0], x.device, float_dtype)
        spec = self.specs[self.fed]
        if spec.name is not None:
            kwargs[spec.name] = x
        else:
            position = sum(s.name is None for s in self.specs[: self.fed])
            args = args[:position] + (x,) + args[position + 1:]
        return self.model(*args, **kwargs)

