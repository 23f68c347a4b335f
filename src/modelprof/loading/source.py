"""What the user asked for, in plain data: where the model comes from, its inputs, and how to write the output.

The command line parses its option text into these objects (:class:`ModelSource`, :class:`OutputOptions`) and
passes them on; a child process gets a :class:`ModelSource` as JSON. Torch is imported only when a model or an
input is really built, so ``modelprof --help`` starts without it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from modelprof import units
from modelprof.errors import Hint, UsageError, one_line


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
    def torch(self) -> Any:
        """The ``torch.dtype`` (torch is imported on first use, not with the command line)."""
        import torch

        return getattr(torch, self.value)


MODEL_DTYPES = (DType.FLOAT32, DType.FLOAT16, DType.BFLOAT16, DType.FLOAT64)


@dataclass(frozen=True)
class InputSpec:
    """One input described on the command line: ``[NAME=]SHAPE[:DTYPE[:HIGH]]``; the shape excludes the batch."""

    shape: tuple[int | str, ...]
    dtype: DType = DType.FLOAT32
    name: str | None = None
    high: int = 2

    def bind(self, name: str, value: int) -> InputSpec:
        """This spec with the named size ``name`` (``SEQ``) set to ``value``."""
        return replace(self, shape=tuple(value if d == name else d for d in self.shape))

    def make(self, batch: int, device: Any, float_dtype: Any = None) -> Any:
        """A random tensor of shape (batch, *shape): normal floats, or integers uniform in [0, high)."""
        import torch

        named = [d for d in self.shape if isinstance(d, str)]
        if named:
            raise UsageError(f"the input size {named[0]} has no value; sweep it with {named[0]}=V1,V2,...",
                             option="sweep")

        shape = (batch, *self.shape)
        dtype = float_dtype if float_dtype is not None and self.dtype in MODEL_DTYPES else self.dtype.torch
        try:
            if self.dtype == DType.BOOL:
                return torch.randint(0, 2, shape, device=device).bool()
            if self.dtype in (DType.INT64, DType.INT32):
                return torch.randint(0, self.high, shape, device=device, dtype=dtype)
            return torch.randn(shape, device=device, dtype=dtype)
        except (RuntimeError, MemoryError, OverflowError) as exc:
            raise self._too_large(shape, dtype.itemsize, exc) from None

    @staticmethod
    def _too_large(shape: tuple[int, ...], itemsize: int, exc: BaseException) -> UsageError:
        """The error for an input that cannot be created: the memory it needs, or the size that overflows."""
        numel = math.prod(shape)
        where = units.shapes((shape,))
        if numel >= 2**63:
            return UsageError(f"an input of shape {where} has {numel:,} elements, more than a tensor can hold; "
                              "give smaller sizes")
        return UsageError(f"an input of shape {where} needs {units.nbytes(numel * itemsize)} "
                          f"({numel * itemsize:,} bytes), more than can be allocated here ({one_line(exc)})",
                          hint=Hint.META_DEVICE)


_SIZE = r"(\d+|[A-Z][A-Z0-9_]*)"
_SHAPE = re.compile(rf"^\s*({_SIZE}\s*([,x×]\s*{_SIZE}\s*)*)?$")


def parse_shape(text: str, option: str = "--shape") -> tuple[int | str, ...]:
    """``"3,500,500"`` (or ``3x500x500``) -> ``(3, 500, 500)``; the empty string is a per-sample scalar. A size may
    be an upper-case name (``SEQ``) whose values ``--sweep SEQ=128,256`` gives."""
    if not _SHAPE.match(text):
        raise UsageError(f"{option}: '{text}' is not a shape; write sizes separated by commas, e.g. 3,224,224")
    parts = re.split(r"[,x×]", text.replace(" ", "")) if text.strip() else []
    dims = tuple(int(d) if d.isdigit() else d for d in parts)
    numbers = [d for d in dims if isinstance(d, int)]
    if any(d <= 0 for d in numbers):
        raise UsageError(f"{option}: '{text}' has a size of 0; every size must be a positive integer")
    if math.prod(numbers) >= 2**62:
        raise UsageError(f"{option}: '{text}' has {math.prod(dims):,} elements per sample, more than a tensor can "
                         "hold; give smaller sizes")
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


@dataclass(frozen=True)
class Inputs:
    """How to build a model's inputs at any batch size: from specs, or from a user factory."""

    specs: tuple[InputSpec, ...] = ()
    factory: str | None = None

    def names(self) -> set[str]:
        """The named sizes (``SEQ``) of the specs."""
        return {d for spec in self.specs for d in spec.shape if isinstance(d, str)}

    def bind(self, name: str, value: int) -> Inputs:
        """These inputs with the named size ``name`` set to ``value``."""
        return replace(self, specs=tuple(spec.bind(name, value) for spec in self.specs))

    def build(self, batch: int, device: Any, float_dtype: Any = None) -> tuple[tuple, dict]:
        """``(args, kwargs)`` for one call at this batch size."""
        from modelprof.loading.build import build_inputs, call_inputs_factory

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


@dataclass(frozen=True)
class ModelSource:
    """Everything needed to build the model and its inputs again, in this process or in a child process. How they
    run (dtype, autocast, memory format, the step) is the :class:`~modelprof.workload.Workload`'s business."""

    target: str
    inputs: Inputs
    kwargs: dict[str, Any] = field(default_factory=dict)
    device: Device = Device.CPU
    task: str | None = None  #: the head of a transformers config TARGET

    def build_model(self) -> Any:
        """The model, on its device."""
        from modelprof.loading.build import build_model

        return build_model(self.target, self.kwargs, self.device, self.task)

    def build_inputs(self, batch: int) -> tuple[tuple, dict]:
        """``(args, kwargs)`` at this batch size."""
        return self.inputs.build(batch, self.device.value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, to hand the source to a child process."""
        return {
            "target": self.target, "kwargs": self.kwargs, "device": self.device.value, "task": self.task,
            "factory": self.inputs.factory,
            "specs": [{"shape": list(s.shape), "dtype": s.dtype.value, "name": s.name, "high": s.high}
                      for s in self.inputs.specs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSource:
        specs = tuple(InputSpec(tuple(s["shape"]), DType(s["dtype"]), s["name"], s["high"]) for s in d["specs"])
        return cls(target=d["target"], inputs=Inputs(specs=specs, factory=d["factory"]), kwargs=d["kwargs"],
                   device=Device(d["device"]), task=d.get("task"))


@dataclass(frozen=True)
class OutputOptions:
    """How a command writes its report: the format, the file (``-`` is stdout) and whether to colour tables."""

    fmt: str = "table"
    path: str = "-"
    color: bool = False
    stream: Any = None  #: where ``-`` writes (None: sys.stdout at the time of writing)
