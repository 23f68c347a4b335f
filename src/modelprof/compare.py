"""``modelprof compare`` and ``modelprof check``: differences between saved reports, and limits on a report.

Pure functions of plain data (reports loaded from JSON, or just measured): no torch here.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import units
from .errors import UsageError
from .report import COST_FIELDS, BenchReport, Report

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


def load_report(path: str) -> Report | BenchReport:
    """A report saved by ``modelprof stats --format json`` or ``modelprof bench --format json``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; save a report with --format json -o {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON report ({exc}); save one with --format json") from None
    try:
        if isinstance(data, dict) and "sweep" in data:
            return BenchReport.from_dict(data)
        if isinstance(data, dict) and "layers" in data:
            return Report.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: a modelprof report with a missing or malformed field ({exc})") from None
    raise UsageError(f"{path}: not a modelprof report (no 'layers' or 'sweep'); save one with --format json")


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
        return Comparison(old.model, new.model, total, latency=latency)
    total = tuple(Delta(m, getattr(old.total, m), getattr(new.total, m)) for m in COST_FIELDS)
    old_layers = {r.name: r for r in old.layers}
    new_layers = {r.name: r for r in new.layers}
    changes = []
    for name in list(old_layers) + [n for n in new_layers if n not in old_layers]:
        a, b = old_layers.get(name), new_layers.get(name)
        deltas = tuple(Delta(m, getattr(a, m) if a else 0, getattr(b, m) if b else 0) for m in COST_FIELDS)
        status = ("added" if a is None else "removed" if b is None
                  else "changed" if any(d.change for d in deltas) else "same")
        changes.append(LayerChange(name, status, deltas))
    return Comparison(old.model, new.model, total, layers=tuple(changes))


def parse_percent(text: str) -> float:
    """``'5%'`` or ``'5'`` -> 5.0."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"--fail-over: '{text}' is not a percentage; write e.g. 5%") from None
    if value < 0:
        raise UsageError(f"--fail-over: '{text}' is negative; write e.g. 5%")
    return value


# ----------------------------------------------------------------------------------------------------------------
# check
# ----------------------------------------------------------------------------------------------------------------

#: budget key -> (what it limits, how its value is parsed, how a value is shown)
LIMITS: dict[str, tuple[str, Any, Any]] = {
    "max_params": ("params", units.parse_count, units.count),
    "max_flops": ("flops", units.parse_count, units.count),
    "max_madd": ("madd", units.parse_count, units.count),
    "max_mem": ("mem_read + mem_write", units.parse_bytes, units.nbytes),
    "max_mem_read": ("mem_read", units.parse_bytes, units.nbytes),
    "max_mem_write": ("mem_write", units.parse_bytes, units.nbytes),
    "max_latency_ms": ("median latency [ms]", float, lambda v: f"{v:.3f} ms"),
}


@dataclass(frozen=True)
class LimitResult:
    """One budget line: the measured value, the limit and whether it holds."""

    key: str
    measured: float
    limit: float

    @property
    def passed(self) -> bool:
        return self.measured <= self.limit

    def line(self) -> str:
        what, _, show = LIMITS[self.key]
        verdict = "pass" if self.passed else "FAIL"
        return f"{verdict}  {what}: {show(self.measured)} (limit {show(self.limit)})"

    def to_dict(self) -> dict[str, Any]:
        return {"limit": self.key, "measured": self.measured, "max": self.limit, "passed": self.passed}


def parse_limit(key: str, value: Any) -> float:
    """A budget value from the command line or TOML: numbers as they are, strings with K/M/G or KB/MiB suffixes."""
    _, parse, _ = LIMITS[key]
    if isinstance(value, bool):
        raise UsageError(f"budget {key}: {value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(parse(str(value)))
    except ValueError as exc:
        raise UsageError(f"budget {key}: {exc}") from None


def load_budget(path: str | None) -> dict[str, Any]:
    """Limits from ``--budget FILE.toml`` (top level or ``[tool.modelprof]``), else ``[tool.modelprof]`` of
    ./pyproject.toml when it has one, else nothing."""
    if path is None:
        default = Path("pyproject.toml")
        if not default.is_file():
            return {}
        table = _read_toml(str(default)).get("tool", {}).get("modelprof", {})
    else:
        data = _read_toml(path)
        table = data.get("tool", {}).get("modelprof", data)
    unknown = sorted(set(table) - set(LIMITS))
    if unknown:
        raise UsageError(f"budget: unknown key(s) {', '.join(unknown)}; known: {', '.join(LIMITS)}")
    return dict(table)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"--budget {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None


def check_limits(limits: dict[str, float], report: Report, median_latency_s: float | None) -> list[LimitResult]:
    """Measured value against each limit, in the order of :data:`LIMITS`."""
    total = report.total
    measured = {
        "max_params": total.params, "max_flops": total.flops, "max_madd": total.madd,
        "max_mem": total.mem_read + total.mem_write, "max_mem_read": total.mem_read,
        "max_mem_write": total.mem_write,
        "max_latency_ms": None if median_latency_s is None else median_latency_s * 1e3,
    }
    return [LimitResult(key, measured[key], limits[key]) for key in LIMITS if key in limits]
