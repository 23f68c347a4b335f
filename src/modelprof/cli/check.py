"""``modelprof check``: hold a model to budgets in CI (exit 1 when a limit is exceeded)."""

from __future__ import annotations

from collections.abc import Callable

import click

from modelprof.cli.common import CONVENTION_OPTION, emit, model_command
from modelprof.errors import ModelprofError, UsageError
from modelprof.loading.source import ModelSource, OutputOptions
from modelprof.reports.budgets import LIMITS, load_budget, parse_limit
from modelprof.workload import Workload


def limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """One ``--max-<metric>`` option per budget in :data:`modelprof.reports.budgets.LIMITS`."""
    for limit in reversed(LIMITS.values()):
        command = click.option(limit.option, limit.key, metavar="N", help=limit.help)(command)
    return command


@click.command()
@model_command()
@limit_options
@click.option("--budget", "budget_file", metavar="FILE.toml",
              help="Limits from a TOML file (top level or [tool.modelprof]); default: ./pyproject.toml's "
                   "[tool.modelprof]. Options given on the command line win.")
@CONVENTION_OPTION
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              metavar="SECONDS", help="Timing budget for --max-latency-ms and --min-mfu.")
def check(source: ModelSource, workload: Workload, out: OutputOptions, batch: int, budget_file: str | None,
          duration: float, convention: str | None, **limit_values: str | None) -> None:
    """Check TARGET against budgets: one line per limit, exit 0 when all hold, 1 when any is exceeded.

    Counts take K/M/G/T suffixes, sizes KB/MB/GB or KiB/MiB/GiB. Only stats run unless a latency limit is given.
    A limit on the backward, the step or its memory counts a training step (AdamW, loss = sum of outputs) unless
    --train says otherwise. With --convention, --max-flops holds a peer tool's count (in its unit) of the forward.
    """
    from modelprof.planning.check import run_check
    from modelprof.reports.catalog import document

    budget = load_budget(budget_file)
    budget.update({k: v for k, v in limit_values.items() if v is not None})
    if not budget:
        raise UsageError(f"no limits given; pass {'/'.join(limit.option for limit in LIMITS.values())} "
                         "or a --budget file")
    limits = {key: parse_limit(key, value) for key, value in budget.items()}
    result = run_check(source, limits, workload, batch, duration, convention)
    emit(document(result), out)
    if not result.passed:
        raise ModelprofError(f"{result.failed} of {len(result.limits)} limit(s) exceeded")
