"""Renderers turn a report into text. They never touch the model or torch, so a saved JSON report can be
rendered again later. One module per format."""

from __future__ import annotations

from enum import StrEnum

from ..report import BenchReport, Report
from . import csv, json, markdown, table


class OutputFormat(StrEnum):
    """The output formats of ``modelprof stats``."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


_MODULES = {OutputFormat.TABLE: table, OutputFormat.JSON: json, OutputFormat.CSV: csv,
            OutputFormat.MARKDOWN: markdown}


def render(report: Report | BenchReport, fmt: OutputFormat | str, color: bool = False) -> str:
    """A stats or bench report as text in ``fmt``; ``color`` only affects the rich table."""
    module = _MODULES[OutputFormat(fmt)]
    renderer = module.render_bench if isinstance(report, BenchReport) else module.render
    return renderer(report, color=color) if module is table else renderer(report)
