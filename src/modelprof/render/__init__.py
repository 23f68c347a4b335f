"""Formats: each renders any :class:`~modelprof.reports.document.Document` to text, the way pyinstrument has one
renderer per output. They never touch the model or torch, so a saved JSON report can be rendered again later."""

from __future__ import annotations

from enum import StrEnum

from modelprof.reports.document import Document

from . import csv, json, markdown, table


class OutputFormat(StrEnum):
    """The output formats every command offers."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


_MODULES = {OutputFormat.TABLE: table, OutputFormat.JSON: json, OutputFormat.CSV: csv,
            OutputFormat.MARKDOWN: markdown}


def render(document: Document, fmt: OutputFormat | str, color: bool = False) -> str:
    """``document`` as text in ``fmt``; ``color`` only affects the rich table."""
    return _MODULES[OutputFormat(fmt)].render(document, color=color)
