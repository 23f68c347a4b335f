"""JSON: exact integers, the documented schema (``Report.to_dict``)."""

from __future__ import annotations

import json

from ..backends import BackendComparison
from ..compare import Comparison
from ..report import BenchReport, Report


def render(report: Report, backend: BackendComparison | None = None) -> str:
    """The report as indented JSON; with ``backend``, its comparison under the key ``backend``."""
    data = report.to_dict()
    if backend is not None:
        data["backend"] = backend.to_dict()
    return json.dumps(data, indent=2) + "\n"


def render_bench(report: BenchReport) -> str:
    """The bench report as indented JSON, raw per-call samples included."""
    return json.dumps(report.to_dict(), indent=2) + "\n"


def render_comparison(comparison: Comparison) -> str:
    """The comparison as indented JSON: every delta with old, new, change and percent."""
    return json.dumps(comparison.to_dict(), indent=2) + "\n"
