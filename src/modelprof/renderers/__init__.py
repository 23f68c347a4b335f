"""Renderers turn a report into text. They never touch the model or torch, so a saved JSON report can be
rendered again later. One module per format."""

from __future__ import annotations

from enum import StrEnum

from ..report import Report
from . import csv, json, markdown, table


class OutputFormat(StrEnum):
    """The output formats of ``modelprof stats``."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


_RENDERERS = {
    OutputFormat.TABLE: table.render,
    OutputFormat.JSON: json.render,
    OutputFormat.CSV: csv.render,
    OutputFormat.MARKDOWN: markdown.render,
}


def render(report: Report, fmt: OutputFormat | str, color: bool = False) -> str:
    """The report as text in ``fmt``; ``color`` only affects the rich table."""
    fmt = OutputFormat(fmt)
    if fmt is OutputFormat.TABLE:
        return table.render(report, color=color)
    return _RENDERERS[fmt](report)
