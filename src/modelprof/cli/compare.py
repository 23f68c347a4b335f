"""``modelprof compare``: per-layer and total differences between two saved reports."""

from __future__ import annotations

import click

from modelprof.cli.common import CONVENTION_OPTION, emit, output_command
from modelprof.errors import ModelprofError
from modelprof.loading.source import OutputOptions


@click.command()
@output_command
@click.argument("old_path", metavar="OLD.json")
@click.argument("new_path", metavar="NEW.json")
@click.option("--fail-over", metavar="PERCENT", help="Exit 1 when any total (or median latency) grows by more "
              "than this: 5%.")
@CONVENTION_OPTION
def compare(out: OutputOptions, old_path: str, new_path: str, fail_over: str | None, convention: str | None
            ) -> None:
    """Per-layer and total differences between two saved JSON reports (stats, or bench).

    Layers added or removed are listed; with --fail-over the exit code is 1 when a total grows too much. Two stats
    reports must be counted in the same convention; --convention NAME insists on that one (stats --convention NAME
    --format json makes them).
    """
    from modelprof.reports.catalog import document, load_report
    from modelprof.reports.compare import compare_reports, parse_percent

    threshold = parse_percent(fail_over) if fail_over is not None else None
    kinds = ("stats", "bench")
    if convention is not None:
        from modelprof.counting.peer import convention_named

        convention_named(convention)  # a name not known is refused before the files are read
    comparison = compare_reports(load_report(old_path, kinds), load_report(new_path, kinds), convention)
    emit(document(comparison), out)
    if threshold is not None:
        grown = comparison.grown_over(threshold)
        if grown:
            what = ", ".join(f"{d.metric} {'+' if d.percent is None else f'{d.percent:+.1f} %'}" for d in grown)
            raise ModelprofError(f"--fail-over {fail_over}: {what}")
