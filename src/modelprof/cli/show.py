"""``modelprof show``: render a saved JSON report again, in any format, without running the model."""

from __future__ import annotations

import click

from modelprof.cli.common import emit, output_command
from modelprof.loading.source import OutputOptions


@click.command()
@output_command
@click.argument("path", metavar="REPORT.json")
@click.option("--depth", type=click.IntRange(min=0), help="A stats report: fold its rows into the module tree at "
              "this depth (0 keeps the total only).")
def show(out: OutputOptions, path: str, depth: int | None) -> None:
    """Render REPORT.json, saved by any command with --format json (stats, bench, fit, check, compare,
    calibrate), again in any --format: Markdown for a pull-request comment, a table for your screen. A report of
    an older schema version is read as today's.
    """
    from modelprof.errors import UsageError
    from modelprof.reports.catalog import document, load_report
    from modelprof.reports.stats import Report

    report = load_report(path)
    if depth is not None:
        if not isinstance(report, Report):
            raise UsageError(f"--depth folds the rows of a stats report; {path} is a {report.KIND} report")
        report = report.fold(depth)
    emit(document(report), out)
