"""Markdown: a GitHub table with humanized numbers, ready to paste into a pull request."""

from __future__ import annotations

from .. import units
from ..report import BenchReport, Report
from .bench_columns import BENCH_COLUMNS, summary_lines
from .columns import COLUMNS, NUMERIC_FROM


def render(report: Report) -> str:
    """A Markdown table of the rows with a bold total row, then the unsupported ops if any."""
    headers = [h for h, _, _ in COLUMNS]
    align = ["---" if i < NUMERIC_FROM else "---:" for i in range(len(headers))]
    lines = [f"**{report.model}**: inputs {units.shapes(tuple(i.shape for i in report.inputs))}, "
             f"{report.device}, {report.dtype}", "",
             "| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for row in report.layers:
        lines.append("| " + " | ".join(_cell(human(row)) for _, human, _ in COLUMNS) + " |")
    total = [f"**{_cell(human(report.total))}**" for _, human, _ in COLUMNS]
    lines.append("| " + " | ".join(total) + " |")
    if report.unsupported:
        ops = ", ".join(f"`{op}` ×{n}" for op, n in report.unsupported.items())
        lines += ["", f"Not counted (no formula): {ops}"]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_bench(report: BenchReport) -> str:
    """The sweep as a Markdown table, then the environment and the search's answer."""
    headers = [h for h, _, _ in BENCH_COLUMNS]
    lines = [f"**{report.model}** on {report.device}", "",
             "| " + " | ".join(headers) + " |", "|" + "---:|" * len(headers)]
    for row in report.sweep:
        lines.append("| " + " | ".join(human(row) for _, human, _ in BENCH_COLUMNS) + " |")
    return "\n".join(lines + [""] + summary_lines(report)) + "\n"
