"""CSV: one line per row and a final ``total`` line, exact integers, for spreadsheets and scripts."""

from __future__ import annotations

import csv
import io

from ..report import BenchReport, Report
from .bench_columns import BENCH_COLUMNS
from .columns import COLUMNS


def render(report: Report) -> str:
    """The layer rows and the total row as CSV with exact integers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header for header, _, _ in COLUMNS] + ["Calls"])
    for row in (*report.layers, report.total):
        writer.writerow([exact(row) for _, _, exact in COLUMNS] + [row.calls])
    return out.getvalue()


def render_bench(report: BenchReport) -> str:
    """One line per batch size measured, exact values (milliseconds, samples/s, bytes)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header for header, _, _ in BENCH_COLUMNS])
    for row in report.sweep:
        writer.writerow([exact(row) for _, _, exact in BENCH_COLUMNS])
    return out.getvalue()
