"""Renderers turn a report into text. They never touch the model or torch, so a saved JSON report can be
rendered again later. One module per format."""

from __future__ import annotations

from enum import StrEnum

from ..backends import BackendComparison
from ..compare import Comparison
from ..errors import UsageError
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


def render(report: Report | BenchReport | Comparison, fmt: OutputFormat | str, color: bool = False,
           backend: BackendComparison | None = None) -> str:
    """A stats, bench or comparison report as text in ``fmt``; ``color`` only affects the rich table.
    ``backend`` (stats only) adds another tool's per-layer numbers beside modelprof's."""
    module = _MODULES[OutputFormat(fmt)]
    if backend is not None:
        if module is json:
            return json.render(report, backend)
        if module is csv:
            raise UsageError("--backend has no csv output; use table, markdown or json")
        extra = module.render_backend(backend, report.total.flops, **({"color": color} if module is table else {}))
        return render(report, fmt, color) + extra
    if isinstance(report, Comparison):
        if not hasattr(module, "render_comparison"):
            raise UsageError(f"compare has no {fmt} output; use table, markdown or json")
        renderer = module.render_comparison
    else:
        renderer = module.render_bench if isinstance(report, BenchReport) else module.render
    return renderer(report, color=color) if module is table else renderer(report)
