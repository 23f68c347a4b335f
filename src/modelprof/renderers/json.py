"""JSON: exact integers, the documented schema (``Report.to_dict``)."""

from __future__ import annotations

import json

from ..report import Report


def render(report: Report) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_dict(), indent=2) + "\n"
