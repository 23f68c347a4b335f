"""The ``check`` kind and its view, and the budgets it checks: one limit per metric that asks for one, plus median
latency, peak memory and MFU.

The limits are derived from :data:`modelprof.metrics.METRICS` (``max_<key>``), so a new metric with
``budget=True`` gets its ``--max-<key>`` option, its TOML key and its check line with no other change.
Pure functions of plain data: no torch here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from modelprof import metrics, units
from modelprof.errors import UsageError
from modelprof.reports.document import Document, Note
from modelprof.reports.serial import Saved, codec, key, omit_none
from modelprof.reports.stats import CountedAs, Report


@dataclass(frozen=True)
class Limit:
    """One kind of limit: its budget key, what it limits, how a value is parsed and shown, and its help."""

    key: str
    label: str
    parse: Callable[[str], float]
    show: Callable[[float], str]
    help: str
    needs_timing: bool = False
    at_least: bool = False  #: a floor (``--min-*``): the measured value must reach it
    needs_train: bool = False  #: measured on a training step

    @property
    def option(self) -> str:
        """The command-line form of the key: ``--max-mem-read``."""
        return "--" + self.key.replace("_", "-")


def _metric_limit(m: metrics.Metric) -> Limit:
    example = "300MB" if m.unit is metrics.Unit.BYTES else "4.5G"
    return Limit(f"max_{m.key}", m.label, m.unit.parse, m.unit.show, f"Limit on {m.help or m.title}: {example}.")


LATENCY = Limit("max_latency_ms", "median latency [ms]", float, lambda v: f"{v:.3f} ms",
                "Limit on median latency in ms; runs a timing (see bench).", needs_timing=True)



def _parse_share(text: str) -> float:
    """``'30%'`` or ``'0.3'`` -> 0.3."""
    cleaned = text.strip()
    value = float(cleaned.removesuffix("%")) / (100 if cleaned.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise ValueError(f"'{text}' is not a share between 0 and 100 %; write e.g. 30%")
    return value


MFU = Limit("min_mfu", "MFU", _parse_share, lambda v: f"{100 * v:.1f} %",
            "Floor on model FLOP/s utilisation (achieved MAdd/s over the calibrated peak): 30%; runs a timing.",
            needs_timing=True, at_least=True)

PEAK_MEMORY = Limit("max_peak_memory", "peak memory", units.parse_bytes, units.nbytes,
                    "Limit on the peak of live tensor memory of the counted run (with --train, of a training "
                    "step): 12GiB.")
TRAIN_MEMORY = Limit("max_train_memory", "training-step peak memory", units.parse_bytes, units.nbytes,
                     "Limit on the peak memory of one training step (counts a training step): 80GiB.",
                     needs_train=True)

COMM_BYTES = Limit("max_comm_bytes", "communication per step", units.parse_bytes, units.nbytes,
                   "Limit on the bytes of one rank's collectives per step (the buffers they work on; with --gpus, "
                   "0 on one device): 10GiB.")

#: Every limit ``check`` knows, by budget key, in the order check reports them.
LIMITS: dict[str, Limit] = {
    **{f"max_{m.key}": _metric_limit(m) for m in metrics.METRICS if m.budget},
    PEAK_MEMORY.key: PEAK_MEMORY,
    TRAIN_MEMORY.key: TRAIN_MEMORY,
    COMM_BYTES.key: COMM_BYTES,
    LATENCY.key: LATENCY,
    MFU.key: MFU,
}


@dataclass(frozen=True)
class LimitResult(Saved):
    """One budget line: the measured value, the limit and whether it holds (in JSON the limit is its key)."""

    limit: Limit = field(metadata=codec(lambda limit: limit.key, lambda k: LIMITS[k]))
    measured: float
    value: float = field(metadata=key("max"))

    @property
    def passed(self) -> bool:
        return self.measured >= self.value if self.limit.at_least else self.measured <= self.value

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"passed": self.passed}


@dataclass(frozen=True)
class CheckResult(Saved):
    """Every limit checked on one model: the ``check`` kind."""

    KIND: ClassVar[str] = "check"

    model: str
    limits: tuple[LimitResult, ...]
    convention: CountedAs | None = field(default=None, metadata=omit_none())  #: the counts are a peer's

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.limits)

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.limits)

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"passed": self.passed}


def parse_limit(key: str, value: Any) -> float:
    """A budget value from the command line or TOML: numbers as they are, strings with K/M/G or KB/MiB suffixes."""
    if isinstance(value, bool):
        raise UsageError(f"budget {key}: {value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(LIMITS[key].parse(str(value)))
    except ValueError as exc:
        raise UsageError(f"budget {key}: {exc}") from None


def load_budget(path: str | None) -> dict[str, Any]:
    """Limits from a TOML file (top level or ``[tool.modelprof]``), else ``[tool.modelprof]`` of ./pyproject.toml
    when it has one, else nothing."""
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
        raise UsageError(f"budget file {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None


def check_limits(limits: dict[str, float], report: Report, median_latency_s: float | None = None,
                 mfu: float | None = None) -> tuple[LimitResult, ...]:
    """Measured value against each limit, in the order of :data:`LIMITS`."""
    measured: dict[str, float | None] = {
        f"max_{m.key}": m.value(report.total.values) for m in metrics.METRICS if m.budget}
    measured[LATENCY.key] = None if median_latency_s is None else median_latency_s * 1e3
    measured[MFU.key] = mfu
    peak = report.memory.peak if report.memory else None
    measured[PEAK_MEMORY.key] = measured[TRAIN_MEMORY.key] = peak
    measured[COMM_BYTES.key] = sum(c.bytes for c in report.comm or ())
    return tuple(LimitResult(LIMITS[key], measured[key], limits[key]) for key in LIMITS if key in limits)


# ----------------------------------------------------------------------------------------------------------------
# The view
# ----------------------------------------------------------------------------------------------------------------


def check_document(result: CheckResult) -> Document:
    """One line per limit: ``pass  flops: 18.75M (limit 19.00M)``."""
    lines = tuple(Note(f"{'pass' if r.passed else 'FAIL'}  {r.limit.label}: {r.limit.show(r.measured)} "
                       f"(limit {r.limit.show(r.value)})") for r in result.limits)
    if result.convention is not None:
        lines = (Note(result.convention.header), *lines)
    return Document(result.KIND, "", lines, result.to_dict())
