"""The rich table for people, in the spirit of torchstat's report."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from .. import units
from ..report import Report
from .columns import COLUMNS, NUMERIC_FROM


def render(report: Report, color: bool = False, width: int | None = None) -> str:
    """The report as a boxed table with humanized numbers, a totals row and the ops that were not counted."""
    inputs = ", ".join(f"{i.name + '=' if i.name else ''}{units.shapes((i.shape,))} {i.dtype}" for i in report.inputs)
    table = Table(title=f"{report.model}  ({inputs}; {report.device}, {report.dtype})", show_footer=bool(report.layers))
    for index, (header, human, _) in enumerate(COLUMNS):
        justify = "right" if index >= NUMERIC_FROM else "left"
        table.add_column(header, footer=human(report.total), justify=justify, overflow="fold")
    for row in report.layers:
        table.add_row(*(human(row) for _, human, _ in COLUMNS))
    if not report.layers:
        table.add_row(*(human(report.total) for _, human, _ in COLUMNS))
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, color_system="auto" if color else None,
                      width=width or 200, highlight=False)
    console.print(table)
    total = report.total
    console.print(f"Params: {total.params:,} ({total.trainable_params:,} trainable, "
                  f"{total.non_trainable_params:,} non-trainable)")
    if report.unsupported:
        ops = ", ".join(f"{op} ×{n}" for op, n in report.unsupported.items())
        console.print(f"Not counted (no formula): {ops}")
    return buffer.getvalue()
