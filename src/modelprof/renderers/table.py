"""The rich table for people, in the spirit of torchstat's report."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import units
from ..report import BenchReport, Report
from .bench_columns import BENCH_COLUMNS, summary_lines, throughput_chart
from .columns import COLUMNS, NUMERIC_FROM


def render(report: Report, color: bool = False, width: int | None = None) -> str:
    """The report as a boxed table with humanized numbers, a totals row and the ops that were not counted."""
    inputs = ", ".join(f"{i.name + '=' if i.name else ''}{units.shapes((i.shape,))} {i.dtype}" for i in report.inputs)
    table = Table(title=Text(f"{report.model}  ({inputs}; {report.device}, {report.dtype})"),
                  show_footer=bool(report.layers))
    for index, (header, human, _) in enumerate(COLUMNS):
        justify = "right" if index >= NUMERIC_FROM else "left"
        table.add_column(Text(header), footer=Text(human(report.total)), justify=justify, overflow="fold")
    for row in report.layers:
        table.add_row(*(Text(human(row)) for _, human, _ in COLUMNS))
    if not report.layers:
        table.add_row(*(Text(human(report.total)) for _, human, _ in COLUMNS))
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, color_system="auto" if color else None,
                      width=width or 200, highlight=False)
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
    inputs = ", ".join(f"{i.name + '=' if i.name else ''}{units.shapes((i.shape,))} {i.dtype}" for i in report.inputs)
    table = Table(title=Text(f"{report.model}  ({inputs}; {report.device})"))
    for index, (header, _, _) in enumerate(BENCH_COLUMNS):
        table.add_column(Text(header), justify="right" if 0 < index < len(BENCH_COLUMNS) - 1 else "left")
    for row in report.sweep:
        table.add_row(*(Text(human(row)) for _, human, _ in BENCH_COLUMNS))
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, color_system="auto" if color else None,
                      width=width or 200, highlight=False)
    console.print(table)
    for line in summary_lines(report) + throughput_chart(report):
        console.print(Text(line))
    return buffer.getvalue()
