"""``modelprof compare``: differences between two saved reports of the same kind.

Pure functions of plain data (reports loaded from JSON, or just measured): no torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelprof import metrics
from modelprof.errors import UsageError
from modelprof.reports.kinds import SAVED_KINDS, SCHEMA_VERSION, BenchReport, Report

# ----------------------------------------------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
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

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "old": self.old, "new": self.new, "change": self.change,
                "percent": self.percent}


@dataclass(frozen=True)
class LayerChange:
    """A row present in either report: ``status`` is 'added', 'removed', 'changed' or 'same'."""

    name: str
    status: str
    deltas: tuple[Delta, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "deltas": [d.to_dict() for d in self.deltas]}


@dataclass(frozen=True)
class Comparison:
    """Differences between two saved reports of the same kind (stats, or bench)."""

    old: str
    new: str
    total: tuple[Delta, ...]
    layers: tuple[LayerChange, ...] = ()
    latency: tuple[tuple[int, Delta], ...] = ()

    def grown_over(self, percent: float) -> list[Delta]:
        """Total metrics (and median latencies) that grew by more than ``percent`` %; growth from 0 counts."""
        candidates = list(self.total) + [d for _, d in self.latency]
        return [d for d in candidates
                if d.change > 0 and (d.percent is None or d.percent > percent)]

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "total": [d.to_dict() for d in self.total],
                "layers": [layer.to_dict() for layer in self.layers],
                "latency": [{"batch": b, **d.to_dict()} for b, d in self.latency]}


#: The schema versions ``compare`` reads (1 differs from 2 only in keys that stats and bench reports read back
#: the same way: the peaks' MAdd/s under ``flops``).
READABLE_VERSIONS = (1, SCHEMA_VERSION)


def load_report(path: str) -> Report | BenchReport:
    """A report saved as JSON by ``modelprof stats`` or ``modelprof bench``, read by its ``kind``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; save a report as JSON first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON report ({exc}); save one as JSON") from None
    if not isinstance(data, dict) or data.get("kind") not in SAVED_KINDS:
        found = f"kind {data['kind']!r}" if isinstance(data, dict) and "kind" in data else "no 'kind' key"
        raise UsageError(f"{path}: not a saved stats or bench report ({found}); save one as JSON with "
                         "modelprof stats or bench")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise UsageError(f"{path}: schema_version {version!r}, this modelprof reads {readable}; "
                         "save the report again with this version")
    try:
        return SAVED_KINDS[data["kind"]].from_dict(data)
    except KeyError as exc:
        raise UsageError(f"{path}: a {data['kind']} report without its {exc} key") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path}: a {data['kind']} report with a malformed field ({exc})") from None


def compare_reports(old: Report | BenchReport, new: Report | BenchReport) -> Comparison:
    """Per-layer and total differences of every metric; latency per batch size for bench reports."""
    if type(old) is not type(new):
        raise UsageError("compare needs two stats reports or two bench reports, not one of each")
    if isinstance(old, BenchReport):
        old_rows = {r.batch: r for r in old.sweep}
        new_rows = {r.batch: r for r in new.sweep}
        latency = tuple((b, Delta("median_latency_s", old_rows[b].latency.median, new_rows[b].latency.median))
                        for b in sorted(old_rows.keys() & new_rows.keys()))
        total = tuple(Delta(m, getattr(old, m) or 0, getattr(new, m) or 0) for m in ("max_batch", "best_batch")
                      if getattr(old, m) is not None or getattr(new, m) is not None)
        return Comparison(old.model, new.model, total, layers=_layer_time_changes(old, new), latency=latency)
    keys = tuple(m.key for m in metrics.in_phases((*old.phases, *new.phases)))
    total = tuple(Delta(m, getattr(old.total, m), getattr(new.total, m)) for m in keys)
    old_layers = {r.name: r for r in old.layers}
    new_layers = {r.name: r for r in new.layers}
    changes = []
    for name in list(old_layers) + [n for n in new_layers if n not in old_layers]:
        a, b = old_layers.get(name), new_layers.get(name)
        deltas = tuple(Delta(m, getattr(a, m) if a else 0, getattr(b, m) if b else 0) for m in keys)
        changes.append(_change(name, deltas, a is not None, b is not None))
    return Comparison(old.model, new.model, total, layers=tuple(changes))


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
