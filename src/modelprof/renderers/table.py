"""The rich table for people, in the spirit of torchstat's report."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import units
from ..backends import BackendComparison
from ..compare import Comparison
from ..report import COST_FIELDS, COST_TITLES, BenchReport, Report
from . import backend_cells, comparison_cells
from .bench_columns import BENCH_COLUMNS, summary_lines, throughput_chart
from .columns import COLUMNS, NUMERIC_FROM


def _console(buffer: io.StringIO, color: bool, width: int | None) -> Console:
    """A console writing to ``buffer``: colour only for a terminal, 200 columns unless told otherwise."""
    return Console(file=buffer, force_terminal=color, color_system="auto" if color else None, width=width or 200,
                   highlight=False)


def render(report: Report, color: bool = False, width: int | None = None) -> str:
    """The report as a boxed table with humanized numbers, a totals row and the ops that were not counted."""
    table = Table(title=Text(f"{report.model}  ({units.inputs(report.inputs)}; {report.device}, {report.dtype})"),
                  show_footer=bool(report.layers))
    for index, (header, human, _) in enumerate(COLUMNS):
        justify = "right" if index >= NUMERIC_FROM else "left"
        table.add_column(Text(header), footer=Text(human(report.total)), justify=justify, overflow="fold")
    for row in report.layers:
        table.add_row(*(Text(human(row)) for _, human, _ in COLUMNS))
    if not report.layers:
        table.add_row(*(Text(human(report.total)) for _, human, _ in COLUMNS))
    buffer = io.StringIO()
    console = _console(buffer, color, width)
    console.print(table)
    total = report.total
    console.print(Text(f"Params: {total.params:,} ({total.trainable_params:,} trainable, "
                       f"{total.non_trainable_params:,} non-trainable)"))
    if report.unsupported:
        ops = ", ".join(f"{op} ×{n}" for op, n in report.unsupported.items())
        console.print(Text(f"Not counted (no formula): {ops}"))
    return buffer.getvalue()


def render_bench(report: BenchReport, color: bool = False, width: int | None = None) -> str:
    """The sweep as a table (units in headers), then environment, search answer and a throughput chart."""
    table = Table(title=Text(f"{report.model}  ({units.inputs(report.inputs)}; {report.device})"))
    for index, (header, _, _) in enumerate(BENCH_COLUMNS):
        table.add_column(Text(header), justify="right" if 0 < index < len(BENCH_COLUMNS) - 1 else "left")
    for row in report.sweep:
        table.add_row(*(Text(human(row)) for _, human, _ in BENCH_COLUMNS))
    buffer = io.StringIO()
    console = _console(buffer, color, width)
    console.print(table)
    for line in summary_lines(report) + throughput_chart(report):
        console.print(Text(line))
    return buffer.getvalue()


def render_comparison(comparison: Comparison, color: bool = False, width: int | None = None) -> str:
    """Totals (and latencies) old vs new, then the layers that changed."""
    buffer = io.StringIO()
    console = _console(buffer, color, width)
    totals = Table(title=Text(f"{comparison.old} → {comparison.new}"))
    for header in ("Metric", "Old", "New", "Change"):
        totals.add_column(header, justify="left" if header == "Metric" else "right")
    for _, cells in comparison_cells.rows(comparison):
        totals.add_row(*(Text(c) for c in cells))
    console.print(totals)
    changed = comparison_cells.layer_rows(comparison)
    if changed:
        layers = Table(title="Layers added, removed or changed")
        for header in ("Layer", "Status", *(COST_TITLES[f] for f in COST_FIELDS)):
            layers.add_column(header)
        for cells in changed:
            layers.add_row(*(Text(c) for c in cells))
        console.print(layers)
    elif comparison.layers:
        console.print("No layer changed.")
    return buffer.getvalue()


def render_backend(comparison: BackendComparison, ours_total: int, color: bool = False) -> str:
    """modelprof's per-layer numbers beside another tool's, with the reason wherever they differ."""
    buffer = io.StringIO()
    console = _console(buffer, color, None)
    if comparison.rows:
        table = Table(title=Text(f"modelprof beside {comparison.backend}"))
        for index, header in enumerate(backend_cells.headers(comparison)):
            table.add_column(Text(header), justify="right" if 2 <= index <= 5 else "left", overflow="fold")
        for cells in backend_cells.rows(comparison):
            table.add_row(*(Text(c) for c in cells))
        console.print(table)
    console.print(Text(backend_cells.summary(comparison, ours_total)))
    return buffer.getvalue()
