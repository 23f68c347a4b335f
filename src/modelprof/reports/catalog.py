"""Every report kind, its view, and reading a saved report back (``modelprof show``, ``modelprof compare``).

A kind is a :class:`~modelprof.reports.serial.Saved` dataclass with a ``KIND`` and a view function that turns it
into a :class:`~modelprof.reports.document.Document`; adding one is its module and one line in :data:`KINDS`.
A report saved by an older modelprof is upgraded here, one schema version at a time, before it is read. No torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelprof.errors import UsageError
from modelprof.reports.bench import BenchReport, bench_document
from modelprof.reports.budgets import CheckResult, check_document
from modelprof.reports.calibrate import Calibration, calibration_document
from modelprof.reports.compare import Comparison, comparison_document
from modelprof.reports.document import Document
from modelprof.reports.fit import FitReport, fit_document
from modelprof.reports.serial import SCHEMA_VERSION, Saved
from modelprof.reports.stats import Report, stats_document
from modelprof.reports.sweep import SweepReport, sweep_document
from modelprof.timing.roofline import upgrade_peaks

#: kind -> (its class, its view)
KINDS: dict[str, tuple[type[Saved], Callable[[Any], Document]]] = {
    Report.KIND: (Report, stats_document),
    SweepReport.KIND: (SweepReport, sweep_document),
    BenchReport.KIND: (BenchReport, bench_document),
    FitReport.KIND: (FitReport, fit_document),
    CheckResult.KIND: (CheckResult, check_document),
    Comparison.KIND: (Comparison, comparison_document),
    Calibration.KIND: (Calibration, calibration_document),
}


def document(report: Saved) -> Document:
    """The document of any report kind, ready for any format."""
    return KINDS[report.KIND][1](report)


# ----------------------------------------------------------------------------------------------------------------
# Older schema versions
# ----------------------------------------------------------------------------------------------------------------


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """1 called the peaks' MAdd/s ``flops``, and a fit report was its first fit with copies of all under ``fits``."""
    data = dict(data)
    if data.get("kind") == Report.KIND:  # 1 read these as optional
        data = {"inputs": [], "device": "cpu", "dtype": "float32", **data}
    layers = data.get("layers")
    if isinstance(layers, dict) and isinstance(layers.get("peaks"), dict):
        data["layers"] = {**layers, "peaks": upgrade_peaks(layers["peaks"])}
    if isinstance(data.get("peaks"), dict):
        data["peaks"] = upgrade_peaks(data["peaks"])
    if data.get("kind") == FitReport.KIND:
        head = ("kind", "schema_version", "model")
        fits = data.get("fits") or [data]
        data = {**{k: data[k] for k in head if k in data},
                "fits": [{k: v for k, v in f.items() if k not in (*head, "fits")} for f in fits]}
    return data


#: 2's renames of seconds and of the cross-check, old key -> new key (values in ms become seconds).
_V2_RENAMES = {"backend": "crosscheck", "backend_flops": "tool_flops", "backend_madd": "tool_madd"}


def _v2_to_v3(value: Any, parent_key: str = "") -> Any:
    """2 kept times in ms only (``samples_ms``, ``forward_median_ms``) and named the cross-check ``backend``."""
    if isinstance(value, list):
        return [_v2_to_v3(v, parent_key) for v in value]
    if not isinstance(value, dict):
        return value
    out = {_V2_RENAMES.get(k, k): _v2_to_v3(v, k) for k, v in value.items()}
    if parent_key == "backend" and "crosscheck" in out:  # the cross-check's own tool name
        out["tool"] = out.pop("crosscheck")
    for ms, seconds in (("samples_ms", "samples_s"), ("forward_median_ms", "forward_median_s")):
        if ms in out and seconds not in out:
            out[seconds] = [x / 1e3 for x in out[ms]] if isinstance(out[ms], list) else out[ms] / 1e3
    return out


#: version -> the step that brings a report of that version to the next one
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A saved report's JSON in today's schema (from any version this modelprof reads)."""
    version = data.get("schema_version")
    while version in UPGRADES:
        data = UPGRADES[version](data)
        version += 1
    return {**data, "schema_version": version}


def read_report(data: Any, where: str = "the report", kinds: tuple[str, ...] | None = None) -> Saved:
    """The report a saved JSON value holds, upgraded from an older schema; a :class:`UsageError` saying what is
    wrong otherwise (not an object, an unknown kind, a newer or unknown schema version, a missing key)."""
    allowed = kinds or tuple(KINDS)
    if not isinstance(data, dict) or data.get("kind") not in allowed:
        found = f"kind {data['kind']!r}" if isinstance(data, dict) and "kind" in data else "no 'kind' key"
        raise UsageError(f"{where}: not a saved {' or '.join(allowed)} report ({found}); save one with "
                         "--format json")
    version = data.get("schema_version")
    readable = (*UPGRADES, SCHEMA_VERSION)
    if type(version) is not int or version not in readable:
        raise UsageError(f"{where}: schema_version {version!r}; this modelprof reads "
                         f"{', '.join(map(str, readable))}; save the report again with this version")
    kind = data["kind"]
    try:
        return KINDS[kind][0].from_dict(upgrade(data))
    except KeyError as exc:
        raise UsageError(f"{where}: a {kind} report without its {exc} key") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{where}: a {kind} report with a malformed field ({exc})") from None


def load_report(path: str, kinds: tuple[str, ...] | None = None) -> Saved:
    """A report saved as JSON by any modelprof command (or only of ``kinds``), read back."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file; save a report with --format json first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON report ({exc}); save one with --format json") from None
    return read_report(data, path, kinds)
