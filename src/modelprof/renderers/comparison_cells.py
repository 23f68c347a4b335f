"""How a comparison's numbers read in every renderer: humanized by metric, signed changes, percentages."""

from __future__ import annotations

from .. import units
from ..compare import Comparison, Delta

_BYTES = {"mem_read", "mem_write"}


def value(metric: str, v: float) -> str:
    """A value in the metric's unit."""
    if metric in _BYTES:
        return units.nbytes(v)
    if metric == "median_latency_s":
        return f"{units.milliseconds(v)} ms"
    return units.count(v)


def change(delta: Delta) -> str:
    """Signed change with its percentage: ``+1.20M (+3.4 %)``; ``new`` when growing from zero."""
    sign = "+" if delta.change > 0 else "-" if delta.change < 0 else "±"
    amount = sign + value(delta.metric, abs(delta.change))
    if delta.percent is None:
        return amount + (" (new)" if delta.change else "")
    return f"{amount} ({delta.percent:+.1f} %)"


def rows(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """(section, cells) rows shared by the table and Markdown renderers."""
    out = [("total", [d.metric, value(d.metric, d.old), value(d.metric, d.new), change(d)])
           for d in comparison.total]
    out += [("latency", [f"batch {b} median", value(d.metric, d.old), value(d.metric, d.new), change(d)])
            for b, d in comparison.latency]
    return out


def layer_rows(comparison: Comparison) -> list[list[str]]:
    """One row per layer that was added, removed or changed: name, status, then each metric's change."""
    return [[layer.name, layer.status, *(change(d) if d.change else "" for d in layer.deltas)]
            for layer in comparison.layers if layer.status != "same"]
