"""Markdown: a GitHub table with humanized numbers, ready to paste into a pull request."""

from __future__ import annotations

from .. import units
from ..backends import BackendComparison
from ..compare import Comparison
from ..report import COST_FIELDS, COST_TITLES, BenchReport, Report
from . import backend_cells, comparison_cells
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


def render_comparison(comparison: Comparison) -> str:
    """A pull-request-ready Markdown summary: totals, latencies, and the layers that changed."""
    lines = [f"### modelprof: `{comparison.old}` → `{comparison.new}`", "",
             "| Metric | Old | New | Change |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(_cell(c) for c in cells) + " |" for _, cells in comparison_cells.rows(comparison)]
    changed = comparison_cells.layer_rows(comparison)
    if changed:
        headers = ["Layer", "Status", *(COST_TITLES[f] for f in COST_FIELDS)]
        lines += ["", "| " + " | ".join(headers) + " |", "|---|---|" + "---:|" * len(COST_FIELDS)]
        lines += ["| " + " | ".join(_cell(c) for c in cells) + " |" for cells in changed]
    elif comparison.layers:
        lines += ["", "No layer changed."]
    return "\n".join(lines) + "\n"


def render_backend(comparison: BackendComparison, ours_total: int) -> str:
    """modelprof beside another tool as a Markdown table."""
    lines = ["", f"#### modelprof beside {comparison.backend}", ""]
    if comparison.rows:
        headers = backend_cells.headers(comparison)
        lines += ["| " + " | ".join(headers) + " |", "|---|---|---:|---:|---:|---:|---|"]
        lines += ["| " + " | ".join(_cell(c) for c in cells) + " |" for cells in backend_cells.rows(comparison)]
        lines.append("")
    lines.append(backend_cells.summary(comparison, ours_total))
    return "\n".join(lines) + "\n"
