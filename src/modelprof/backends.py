"""``modelprof stats --backend thop|torchstat``: run the tool users know on the same model and put its per-layer
numbers beside modelprof's, with the reason wherever they differ.

Both run on a deep copy of the model (thop and torchstat leave buffers behind in the model they profile);
multi-input models go through :class:`~modelprof.loading.SingleTensorAdapter`. torchstat's own report crashes
on current pandas, so its per-layer formula functions are called from modelprof's hooks instead, one layer at a
time, so that a layer torchstat cannot handle (Linear on 3-D input) is reported and the rest still compared.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from .errors import UsageError, first_line
from .loading import ModelSource, SingleTensorAdapter
from .report import Report


class Backend(StrEnum):
    """Tools that ``--backend`` can run beside modelprof."""

    THOP = "thop"
    TORCHSTAT = "torchstat"


@dataclass(frozen=True)
class BackendRow:
    """One layer: modelprof's numbers, the other tool's (None where it has no row), and why they differ."""

    name: str
    type: str
    flops: int
    theirs_flops: float | None
    madd: int
    theirs_madd: float | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "flops": self.flops, "backend_flops": self.theirs_flops,
                "madd": self.madd, "backend_madd": self.theirs_madd, "reason": self.reason}


@dataclass(frozen=True)
class BackendComparison:
    """A backend's per-layer results beside modelprof's. ``error`` is set when the tool failed outright."""

    backend: str
    rows: tuple[BackendRow, ...]
    total_flops: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "total_flops": self.total_flops, "error": self.error,
                "layers": [r.to_dict() for r in self.rows]}


_INSTALL = "pip install 'modelprof[compare]'"


def run_backend(backend: Backend, source: ModelSource, model: nn.Module, report: Report, batch: int
                ) -> BackendComparison:
    """Run ``backend`` on a copy of ``model`` with inputs from ``source`` and compare with ``report``."""
    if source.inputs.factory:
        raise UsageError("--backend needs inputs described with --shape/--input (the single-tensor adapter "
                         "rebuilds them); --inputs factories are not supported")
    if backend is Backend.TORCHSTAT and batch != 1:
        raise UsageError("--backend torchstat: torchstat always profiles one sample; use --batch 1")
    specs = source.inputs.specs
    if not specs or specs[0].name is not None or not specs[0].dtype.value.startswith(("float", "bfloat")):
        raise UsageError("--backend: the first input must be a positional float tensor (thop and torchstat feed "
                         "one float tensor through the single-tensor adapter)")
    wrapped = len(specs) > 1
    subject = copy.deepcopy(model)
    if wrapped:
        subject = SingleTensorAdapter(subject, specs)
    x = specs[0].make(batch, source.device.value, source.dtype.torch if source.dtype else None)
    try:
        if backend is Backend.THOP:
            theirs = _thop_layers(subject, x)
        else:
            theirs = _torchstat_layers(subject, x)
    except ImportError:
        raise UsageError(f"--backend {backend}: {backend} is not installed; {_INSTALL}") from None
    except Exception as exc:  # the tool crashed outright: say so, keep modelprof's report
        message = first_line(exc)
        return BackendComparison(str(backend), (), None, f"{backend} failed: {type(exc).__name__}: {message}")
    if wrapped:
        theirs = {name.removeprefix("model."): value for name, value in theirs.items()}
    return _compare(backend, report, theirs)


def _thop_layers(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[float | None, float | None, str]]:
    """thop's multiply-accumulates per leaf module, from ``thop.profile(..., ret_layer_info=True)``."""
    import thop

    with contextlib.redirect_stdout(io.StringIO()):
        _, _, layers = thop.profile(model, inputs=(x,), ret_layer_info=True, verbose=False)
    flat: dict[str, tuple[float | None, float | None, str]] = {}

    def walk(tree: dict, prefix: str) -> None:
        for name, (ops, _params, children) in tree.items():
            full = prefix + name
            if children:
                walk(children, full + ".")
            else:
                flat[full] = (float(ops), None, "")

    walk(layers, "")
    return flat


def _torchstat_layers(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[float | None, float | None, str]]:
    """torchstat's per-layer MAdd and Flops from its own formula functions, layer by layer."""
    import torchstat

    names = {id(m): n for n, m in model.named_modules()}
    results: dict[str, tuple[float | None, float | None, str]] = {}

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        name = names[id(module)]
        if name in results or not inputs or not isinstance(output, torch.Tensor):
            return
        first = inputs[0] if len(inputs) == 1 else inputs
        values: list[float | None] = []
        notes = []
        for function in (torchstat.compute_madd, torchstat.compute_flops):
            printed = io.StringIO()
            try:
                with contextlib.redirect_stdout(printed):
                    value = function(module, first, output)
            except Exception as exc:  # torchstat asserts on shapes it does not handle
                values.append(None)
                dims = inputs[0].dim() if isinstance(inputs[0], torch.Tensor) else "?"
                notes.append(f"torchstat fails on this layer ({type(exc).__name__} on {dims}-D input)")
                continue
            if "not supported" in printed.getvalue():
                values.append(None)
                notes.append(f"torchstat has no formula for {type(module).__name__}")
            else:
                values.append(float(value))
        results[name] = (values[1], values[0], "; ".join(dict.fromkeys(notes)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if next(m.children(), None) is None]
    try:
        with torch.inference_mode():
            model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    return results


_THOP_ZERO = ("ReLU", "ReLU6", "MaxPool", "AdaptiveMaxPool", "Dropout", "ZeroPad", "PixelShuffle")


def _reason(backend: Backend, row_type: str, ours: float, theirs: float | None, note: str) -> str:
    if note:
        return note
    if " (" in row_type:
        return f"functional ops run in forward ({row_type.split(' (', 1)[1].rstrip(')')}) are invisible to " \
               f"{backend}'s module hooks"
    if theirs is None:
        return f"{backend} reports no row for this layer"
    if theirs == ours:
        return ""
    if backend is Backend.THOP:
        from thop.profile import register_hooks

        if theirs == 0 and row_type.startswith(_THOP_ZERO):
            return f"thop counts {row_type} as zero ops"
        if not any(cls.__name__ == row_type for cls in register_hooks):
            return f"thop has no rule for {row_type}: it counts 0"
        return f"thop's {row_type} rule counts differently (e.g. norms as 2 ops per element, adds included)"
    if row_type.startswith("Upsample"):
        return "torchstat's Upsample Flops drop the channel count (its bug)"
    return f"torchstat's {row_type} convention differs"


def _compare(backend: Backend, report: Report, theirs: dict[str, tuple[float | None, float | None, str]]
             ) -> BackendComparison:
    rows = []
    for layer in report.layers:
        flops, madd, note = theirs.get(layer.name, (None, None, ""))
        if backend is Backend.THOP:
            reason = _reason(backend, layer.type, layer.flops, flops, note)
        else:
            mismatch = [(ours, their) for ours, their in ((layer.flops, flops), (layer.madd, madd)) if ours != their]
            reason = _reason(backend, layer.type, *(mismatch[0] if mismatch else (0, 0)), note)
        rows.append(BackendRow(layer.name, layer.type, layer.flops, flops, layer.madd, madd, reason))
    total = sum(v[0] for v in theirs.values() if v[0] is not None)
    return BackendComparison(str(backend), tuple(rows), total)
