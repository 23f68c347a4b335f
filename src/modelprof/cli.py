"""The command line. It parses options, calls loading and the collectors, and picks a renderer: no arithmetic."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .counting import count_costs
from .errors import ModelprofError, UsageError
from .loading import MODEL_DTYPES, Device, DType, build_model, input_options, parse_kwargs
from .renderers import OutputFormat, render


def check_writable(output: str) -> None:
    """Refuse an output path that cannot be written, before any work is done (and without touching it)."""
    if output == "-":
        return
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"-o {output}: is a folder; give a file name such as {output.rstrip('/')}/report.json")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"-o {output}: folder '{parent}' does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"-o {output}: not writable; choose a path you can write to")


def write_output(text: str, output: str) -> None:
    """Write to ``output`` (``-`` is stdout)."""
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write ({exc.strerror}); choose another path") from None


def model_options(command: Callable) -> Callable:
    """TARGET and the input options every model command shares."""
    options = [
        click.argument("target"),
        click.option("--shape", help="One float input, without the batch: 3,224,224."),
        click.option("--input", "input_specs", multiple=True, metavar="[NAME=]SHAPE[:DTYPE[:HIGH]]",
                     help="One input per use, in call order; NAME= makes it a keyword argument. "
                          "DTYPE: " + ", ".join(d.value for d in DType) + "; integers are drawn from [0, HIGH)."),
        click.option("--inputs", "inputs_factory", metavar="MODULE:FUNCTION",
                     help="A function of the batch size returning a tensor, tuple, dict or (tuple, dict)."),
        click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Batch size prepended to every input."),
        click.option("--kwargs", "kwargs_json", metavar="JSON",
                     help="""Constructor arguments: '{"num_classes": 10}'."""),
        click.option("--device", type=click.Choice([d.value for d in Device]), default="cpu", show_default=True,
                     help="meta builds and runs the model on shapes alone, allocating no weights."),
        click.option("--dtype", type=click.Choice([d.value for d in MODEL_DTYPES]),
                     help="Cast the model and its float inputs."),
        click.option("--format", "fmt", type=click.Choice([f.value for f in OutputFormat]), default="table",
                     show_default=True),
        click.option("-o", "--output", default="-", show_default=True, metavar="FILE", help="- is stdout."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def load(target: str, shape: str | None, input_specs: tuple[str, ...], inputs_factory: str | None,
         batch: int, kwargs_json: str | None, device: str, dtype: str | None) -> tuple[Any, tuple, dict]:
    """Model and inputs from the shared options: (model, args, kwargs)."""
    inputs = input_options(shape, input_specs, inputs_factory)
    constructor_kwargs = parse_kwargs(kwargs_json)
    model_dtype = DType(dtype) if dtype else None
    model = build_model(target, constructor_kwargs, Device(device), model_dtype)
    args, kwargs = inputs.build(batch, device, model_dtype.torch if model_dtype else None)
    return model, args, kwargs


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="modelprof")
def cli() -> None:
    """Profile PyTorch models: parameters, compute, memory traffic, latency and throughput."""


@cli.command()
@model_options
@click.option("--depth", type=click.IntRange(min=0), help="Fold rows into the module tree at this depth "
              "(0: total only). Default: leaf rows.")
@click.option("--strict", is_flag=True, help="Exit 1 when any op with a cost could not be counted.")
def stats(target: str, shape: str | None, input_specs: tuple[str, ...], inputs_factory: str | None, batch: int,
          kwargs_json: str | None, device: str, dtype: str | None, fmt: str, output: str, debug: bool,
          depth: int | None, strict: bool) -> None:
    """Per-layer Params, MAdd, Flops, MemRead and MemWrite of TARGET, with exact totals.

    TARGET is pkg.module:Name or path/to/file.py:Name: an nn.Module class, a function returning a module, or a
    module instance.
    """
    check_writable(output)
    model, args, kwargs = load(target, shape, input_specs, inputs_factory, batch, kwargs_json, device, dtype)
    report = count_costs(model, args, kwargs, model_name=target).fold(depth)
    color = output == "-" and fmt == OutputFormat.TABLE and sys.stdout.isatty()
    write_output(render(report, fmt, color=color), output)
    if strict and report.unsupported:
        ops = ", ".join(f"{op} ×{n}" for op, n in report.unsupported.items())
        raise ModelprofError(f"--strict: {len(report.unsupported)} op(s) had no cost formula ({ops}); "
                             "register one with modelprof.register_formula or drop --strict")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; report any failure in one line with exit code 2 (usage) or 1 (model)."""
    argv = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    debug = "--debug" in argv
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
        click.echo(f"modelprof: error: {exc}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("modelprof: interrupted", err=True)
        code = 130
    except Exception as exc:  # a bug of ours: still one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"modelprof: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
                   "traceback and report it)", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
