"""``modelprof compare``: differences between two saved reports of the same kind.

Pure functions of plain data (reports loaded from JSON, or just measured): no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelprof import metrics, units
from modelprof.errors import UsageError
from modelprof.reports.bench import BenchReport
from modelprof.reports.document import Cell, Column, Document, Note, Table
from modelprof.reports.serial import Saved, flat, omit_none
from modelprof.reports.stats import CountedAs, Report

# ----------------------------------------------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta(Saved):
    """One metric, old and new. ``percent`` is None when old is 0 (growth from nothing has no ratio)."""

    metric: str
    old: float
    new: float

    @property
    def change(self) -> float:
        return self.new - self.old

    @property
    def percent(self) -> float | None:
        return None if self.old == 0 else 100.0 * (self.new - self.old) / self.old

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"change": self.change, "percent": self.percent}


@dataclass(frozen=True)
class LayerChange(Saved):
    """A row present in either report: ``status`` is 'added', 'removed', 'changed' or 'same'."""

    name: str
    status: str
    deltas: tuple[Delta, ...]


@dataclass(frozen=True)
class BatchDelta(Saved):
    """The median latency at one batch size, old against new."""

    batch: int
    delta: Delta = field(metadata=flat())


@dataclass(frozen=True)
class Comparison(Saved):
    """Differences between two saved reports of the same kind (stats, or bench): the ``compare`` kind."""

    KIND: ClassVar[str] = "compare"

    old: str
    new: str
    total: tuple[Delta, ...]
    layers: tuple[LayerChange, ...] = ()
    latency: tuple[BatchDelta, ...] = ()
    convention: CountedAs | None = field(default=None, metadata=omit_none())  #: both counted as this peer counts

    def grown_over(self, percent: float) -> list[Delta]:
        """Total metrics (and median latencies) that grew by more than ``percent`` %; growth from 0 counts."""
        candidates = list(self.total) + [b.delta for b in self.latency]
        return [d for d in candidates
                if d.change > 0 and (d.percent is None or d.percent > percent)]


def compare_reports(old: Report | BenchReport, new: Report | BenchReport, convention: str | None = None
                    ) -> Comparison:
    """Per-layer and total differences of every metric; latency per batch size for bench reports. Two stats reports
    must be counted in the same convention (``convention``, when given: that one)."""
    if type(old) is not type(new):
        raise UsageError("compare needs two stats reports or two bench reports, not one of each")
    if isinstance(old, Report):
        names = [r.convention.name if r.convention else None for r in (old, new)]
        wanted = [convention] * 2 if convention else names[:1] * 2
        if names != wanted:
            shown = ", ".join(f"{n or 'modelprof'}" for n in names)
            raise UsageError(f"the reports are counted in {shown}, not both in {wanted[0] or 'modelprof'}'s "
                             "convention; count them again with stats --convention NAME --format json",
                             option="convention" if convention else None)
    elif convention:
        raise UsageError("bench reports have no convention; --convention compares stats reports",
                         option="convention")
    if isinstance(old, BenchReport):
        old_rows = {r.batch: r for r in old.sweep}
        new_rows = {r.batch: r for r in new.sweep}
        latency = tuple(BatchDelta(b, Delta("median_latency_s", old_rows[b].latency.median,
                                            new_rows[b].latency.median))
                        for b in sorted(old_rows.keys() & new_rows.keys()))
        total = tuple(Delta(m, getattr(old, m) or 0, getattr(new, m) or 0) for m in ("max_batch", "best_batch")
                      if getattr(old, m) is not None or getattr(new, m) is not None)
        return Comparison(old.model, new.model, total, layers=_layer_time_changes(old, new), latency=latency)
    keys = tuple(m.key for m in metrics.in_phases((*old.phases, *new.phases)))
    total = tuple(Delta(m, getattr(old.total, m), getattr(new.total, m)) for m in keys)
    total += _generation_deltas(old, new)
    old_layers = {r.name: r for r in old.layers}
    new_layers = {r.name: r for r in new.layers}
    changes = []
    for name in list(old_layers) + [n for n in new_layers if n not in old_layers]:
        a, b = old_layers.get(name), new_layers.get(name)
        deltas = tuple(Delta(m, getattr(a, m) if a else 0, getattr(b, m) if b else 0) for m in keys)
        changes.append(_change(name, deltas, a is not None, b is not None))
    return Comparison(old.model, new.model, total, layers=tuple(changes), convention=old.convention)


def _generation_deltas(old: Report, new: Report) -> tuple[Delta, ...]:
    """Of two ``--generate`` reports: the KV cache at the end, and a decode step's Flops and bytes per token."""
    if old.generation is None and new.generation is None:
        return ()

    def numbers(r: Report) -> tuple[float, float, float]:
        g, t = r.generation, r.total
        if g is None or not g.new_tokens:
            return 0, 0, 0
        return g.kv_cache, t.dec_flops / g.new_tokens, (t.dec_mem_read + t.dec_mem_write) / g.new_tokens

    return tuple(Delta(name, a, b) for name, a, b in zip(
        ("kv_cache_bytes", "decode_flops_per_token", "decode_bytes_per_token"), numbers(old), numbers(new),
        strict=True))


def _layer_time_changes(old: BenchReport, new: BenchReport) -> tuple[LayerChange, ...]:
    """Median time per layer, old against new, when both reports timed layers (``bench --layers``)."""
    if old.layers is None or new.layers is None:
        return ()
    before = {r.name: r.median for r in old.layers.rows}
    after = {r.name: r.median for r in new.layers.rows}
    return tuple(_change(name, (Delta("layer_time_s", before.get(name, 0.0), after.get(name, 0.0)),),
                         name in before, name in after)
                 for name in list(before) + [n for n in after if n not in before])


def _change(name: str, deltas: tuple[Delta, ...], in_old: bool, in_new: bool) -> LayerChange:
    status = ("added" if not in_old else "removed" if not in_new
              else "changed" if any(d.change for d in deltas) else "same")
    return LayerChange(name, status, deltas)


def parse_percent(text: str) -> float:
    """``'5%'`` or ``'5'`` -> 5.0."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"'{text}' is not a percentage; write e.g. 5%", option="fail_over") from None
    if value < 0:
        raise UsageError(f"'{text}' is negative; write e.g. 5%", option="fail_over")
    return value


# ----------------------------------------------------------------------------------------------------------------
# The view
# ----------------------------------------------------------------------------------------------------------------


def _value(metric: str, v: float) -> str:
    """A value in its metric's unit (``*_s``: seconds, shown in ms)."""
    if metric in metrics.BY_KEY:
        return metrics.BY_KEY[metric].unit.show(v)
    if metric.endswith("bytes") or metric.endswith("bytes_per_token"):
        return units.nbytes(v)
    if metric.endswith("_s"):
        return f"{units.milliseconds(v)} ms"
    return units.count(v)


#: Titles of the comparison's non-metric quantities.
_TITLES = {"layer_time_s": "Median time"}


def _change_text(delta: Delta) -> str:
    """Signed change with its percentage: ``+1.20M (+3.4 %)``; ``new`` when growing from zero."""
    sign = "+" if delta.change > 0 else "-" if delta.change < 0 else "±"
    amount = sign + _value(delta.metric, abs(delta.change))
    if delta.percent is None:
        return amount + (" (new)" if delta.change else "")
    return f"{amount} ({delta.percent:+.1f} %)"


def _delta_cells(label: str, d: Delta) -> tuple[Cell, ...]:
    return (Cell(label), Cell(_value(d.metric, d.old), d.old), Cell(_value(d.metric, d.new), d.new),
            Cell(_change_text(d), d.change))


def comparison_document(comparison: Comparison) -> Document:
    """Totals (and median latencies) old against new, then the layers added, removed or changed."""
    columns = (Column("Metric"), Column("Old", True), Column("New", True), Column("Change", True))
    rows = tuple(_delta_cells(d.metric, d) for d in comparison.total)
    rows += tuple(_delta_cells(f"batch {b.batch} median", b.delta) for b in comparison.latency)
    blocks: list = [Note(comparison.convention.header)] if comparison.convention else []
    blocks.append(Table(columns, rows))
    changed = [layer for layer in comparison.layers if layer.status != "same"]
    if changed:
        layer_columns = (Column("Layer"), Column("Status"),
                         *(Column(metrics.BY_KEY[d.metric].title if d.metric in metrics.BY_KEY
                                  else _TITLES.get(d.metric, d.metric), True) for d in changed[0].deltas))
        layer_rows = tuple((Cell(layer.name), Cell(layer.status),
                            *(Cell(_change_text(d) if d.change else "", d.change) for d in layer.deltas))
                           for layer in changed)
        blocks.append(Table(layer_columns, layer_rows, title="Layers added, removed or changed"))
    elif comparison.layers:
        blocks.append(Note("No layer changed."))
    return Document(comparison.KIND, f"{comparison.old} → {comparison.new}", tuple(blocks), comparison.to_dict())
