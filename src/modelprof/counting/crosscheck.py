"""Cross-checks: run a tool users know (thop, torchstat) on the same model and put its per-layer numbers beside
modelprof's, with the reason wherever they differ.

Both run on a deep copy of the model (thop and torchstat leave buffers behind in the model they profile);
multi-input models go through :class:`~modelprof.loading.build.SingleTensorAdapter`, fed the first float input,
positional or keyword. torchstat's own report crashes on current pandas, so its per-layer formula functions are
called from modelprof's hooks instead, one layer at a time, so that a layer torchstat cannot handle (Linear on
3-D input) is reported and the rest still compared.
"""

from __future__ import annotations

import contextlib
import copy
import io
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from modelprof.errors import UsageError, one_line
from modelprof.loading.build import ModelSource, SingleTensorAdapter
from modelprof.reports.stats import CrossCheck, CrossCheckRow, Report


class Tool(StrEnum):
    """Tools that modelprof can cross-check its counts against."""

    THOP = "thop"
    TORCHSTAT = "torchstat"


INSTALL = "pip install 'modelprof[crosscheck]'"


def run_crosscheck(tool: Tool, source: ModelSource, model: nn.Module, report: Report, batch: int,
                   float_dtype: torch.dtype | None = None) -> CrossCheck:
    """Run ``tool`` on a copy of ``model`` (as prepared) with inputs from ``source`` (float ones in
    ``float_dtype``) and compare with ``report``."""
    if source.inputs.factory:
        raise UsageError(f"a {tool} cross-check needs inputs described by shape (the single-tensor adapter "
                         "rebuilds them), not an inputs factory")
    if tool is Tool.TORCHSTAT and batch != 1:
        raise UsageError("torchstat always profiles one sample; cross-check it at batch 1", option="batch")
    specs = source.inputs.specs
    fed = SingleTensorAdapter.first_float(specs)
    if fed is None:
        raise UsageError(f"{tool} feeds one float tensor, and none of the inputs is a float tensor")
    wrapped = len(specs) > 1 or specs[fed].name is not None
    subject = copy.deepcopy(model)
    if wrapped:
        subject = SingleTensorAdapter(subject, specs, fed)
    x = specs[fed].make(batch, source.device.value, float_dtype)
    try:
        theirs = _thop_layers(subject, x) if tool is Tool.THOP else _torchstat_layers(subject, x)
    except ImportError:
        raise UsageError(f"{tool} is not installed; {INSTALL}") from None
    except Exception as exc:  # the tool crashed outright: say so, keep modelprof's report
        return CrossCheck(str(tool), (), None, f"{tool} failed: {type(exc).__name__}: {one_line(exc)}")
    if wrapped:
        theirs = {name.removeprefix("model."): value for name, value in theirs.items()}
    return _compare(tool, report, theirs)


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


def _thop_rule(row_type: str) -> str:
    """The thop rule that counts a layer of this class (its convention's first docstring line, which names thop's
    own hook), or that thop has none."""
    from modelprof.counting.conventions import THOP_MODULES

    rule = next((r for path, r in THOP_MODULES.items() if path.rsplit(".", 1)[-1] == row_type), None)
    if rule is None:
        return f"thop has no rule for {row_type} (it matches exact classes): it counts 0"
    return f"thop's rule: {(rule.__doc__ or '').strip().splitlines()[0]}"


def _reason(tool: Tool, row: Any, ours: float, theirs: float | None, note: str) -> str:
    row_type = row.type
    if note:
        return note
    if row.ops:
        return f"functional ops run in forward ({', '.join(row.ops)}) are invisible to {tool}'s module hooks"
    if theirs is None:
        return f"{tool} reports no row for this layer"
    if theirs == ours:
        return ""
    if tool is Tool.THOP:
        return _thop_rule(row_type)
    if row_type.startswith("Upsample"):
        return "torchstat's Upsample Flops drop the channel count (its bug)"
    return f"torchstat's {row_type} convention differs"


def _compare(tool: Tool, report: Report, theirs: dict[str, tuple[float | None, float | None, str]]) -> CrossCheck:
    rows = []
    for layer in report.layers:
        flops, madd, note = theirs.get(layer.name, (None, None, ""))
        if tool is Tool.THOP:
            reason = _reason(tool, layer, layer.flops, flops, note)
        else:
            mismatch = [(ours, their) for ours, their in ((layer.flops, flops), (layer.madd, madd)) if ours != their]
            reason = _reason(tool, layer, *(mismatch[0] if mismatch else (0, 0)), note)
        rows.append(CrossCheckRow(layer.name, layer.label, layer.flops, flops, layer.madd, madd, reason))
    total = sum(v[0] for v in theirs.values() if v[0] is not None)
    return CrossCheck(str(tool), tuple(rows), total)
