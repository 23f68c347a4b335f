"""The command line: one module per command (``cli/stats.py`` ...), each holding its own options, the request it
builds and its call into the library; the option groups every command shares are declared once in
:mod:`modelprof.cli.common`. No arithmetic here.

Torch is imported inside the commands, not here, so ``modelprof --help`` and ``--version`` start at once.
"""

from __future__ import annotations

import sys
import traceback
import warnings

import click

from modelprof import __version__
from modelprof.cli.bench import bench
from modelprof.cli.calibrate import calibrate
from modelprof.cli.check import check
from modelprof.cli.common import TASKS, error_line
from modelprof.cli.compare import compare
from modelprof.cli.fit import fit
from modelprof.cli.show import show
from modelprof.cli.stats import stats
from modelprof.errors import ModelprofError, one_line

__all__ = ["TASKS", "cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="modelprof")
@click.option("--debug", is_flag=True, help="Show tracebacks (also accepted after the command).")
def cli(debug: bool) -> None:
    """Profile PyTorch models: parameters, compute, memory traffic, latency and throughput."""


for _command in (stats, bench, fit, calibrate, check, compare, show):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; report any failure in one line with exit code 2 (usage) or 1 (model)."""
    argv = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not debug:  # a library's deprecation notes are not the report's; --debug shows them
        warnings.simplefilter("ignore")
    try:
        code = cli.main(args=argv, prog_name="modelprof", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("modelprof: aborted", err=True)
        code = 130
    except click.ClickException as exc:
        hint = f" (see 'modelprof {exc.ctx.info_name} --help')" if getattr(exc, "ctx", None) and exc.ctx.parent \
            else " (see 'modelprof --help')"
        click.echo(f"modelprof: error: {exc.format_message()}{hint}", err=True)
        code = exc.exit_code
    except ModelprofError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"modelprof: error: {error_line(exc)}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("modelprof: interrupted", err=True)
        code = 130
    except Exception as exc:  # a bug of ours: still one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"modelprof: internal error: {type(exc).__name__}: {one_line(exc)} (rerun with --debug for the "
                   "traceback and report it)", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
