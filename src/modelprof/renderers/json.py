"""JSON: exact integers, the documented schema (``Report.to_dict``)."""

from __future__ import annotations

import json

from ..report import BenchReport, Report


def render(report: Report) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_dict(), indent=2) + "\n"


def render_bench(report: BenchReport) -> str:
    """The bench report as indented JSON, raw per-call samples included."""
    return json.dumps(report.to_dict(), indent=2) + "\n"
