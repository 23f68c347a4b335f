"""``modelprof stats``: per-layer counts of a forward, a training step or a generation; ``--sweep`` over a size."""

from __future__ import annotations

import click

from modelprof.cli.common import CONVENTION_OPTION, check_writable, emit, model_command
from modelprof.errors import Hint, ModelprofError, UsageError
from modelprof.loading.source import ModelSource, OutputOptions
from modelprof.workload import Workload


@click.command()
@model_command(generate="Count generation: one prefill of --prompt-len tokens, then --new-tokens decode steps "
               "through the KV cache (a transformers causal LM).")
@click.option("--depth", type=click.IntRange(min=0), help="Fold rows into the module tree at this depth "
              "(0: total only). Default: leaf rows.")
@click.option("--strict", is_flag=True, help="Exit 1 when any op with a cost could not be counted.")
@click.option("--crosscheck", "--backend", "crosscheck", type=click.Choice(["thop", "torchstat"]),
              help="Also run thop or torchstat and show their per-layer numbers beside modelprof's, with why they "
                   "differ (pip install 'modelprof[crosscheck]').")
@CONVENTION_OPTION
@click.option("--sweep", "sweep_text", metavar="DIM=V1,V2,...", help="Count at each value of the batch or of a "
              "named input size (--input input_ids=SEQ:int64:32000 --sweep seq=128,256,512) and say how each total "
              "grows.")
@click.option("--plot", type=click.Path(dir_okay=False), help="With --sweep: save a chart of the totals against "
              "the swept value (needs matplotlib).")
def stats(source: ModelSource, workload: Workload, out: OutputOptions, batch: int, depth: int | None, strict: bool,
          crosscheck: str | None, convention: str | None, sweep_text: str | None, plot: str | None) -> None:
    """Per-layer Params, MAdd, Flops, MemRead and MemWrite of TARGET, with exact totals; with --train, of a whole
    training step (forward, backward, optimizer).

    TARGET is pkg.module:Name or path/to/file.py:Name: an nn.Module class, a function returning a module, or a
    module instance.
    """
    from modelprof.counting.crosscheck import Tool
    from modelprof.counting.stats import run_stats
    from modelprof.reports.catalog import document

    _check_options(source, workload, batch, depth, crosscheck, sweep_text, plot, convention)
    if sweep_text:
        _sweep(source, workload, out, batch, sweep_text, plot)
        return
    report = run_stats(source, workload, batch, depth, Tool(crosscheck) if crosscheck else None, convention)
    emit(document(report), out)
    if strict and report.unsupported:
        ops = ", ".join(f"{op} ×{n}" for op, n in report.unsupported.items())
        raise ModelprofError(f"--strict: {len(report.unsupported)} op(s) had no cost formula ({ops})",
                             hint=Hint.STRICT)


def _check_options(source: ModelSource, workload: Workload, batch: int, depth: int | None, crosscheck: str | None,
                   sweep_text: str | None, plot: str | None, convention: str | None = None) -> None:
    """Refuse the stats option combinations that cannot work, before anything is built (the workload's own are
    refused where it is built)."""
    refusals = [
        (convention and workload.kind != "forward",
         "--convention reproduces a tool's count of one forward; drop --train/--generate or --convention"),
        (convention and (crosscheck or sweep_text),
         "--convention reports one tool's count; drop --crosscheck and --sweep"),
        (crosscheck and workload.kind != "forward",
         "--crosscheck compares forward counts; drop --train/--generate or --crosscheck"),
        (crosscheck and workload.precision.amp, "--crosscheck compares forward counts without autocast; drop --amp"),
        (sweep_text and (workload.generation or crosscheck or depth is not None),
         "--sweep reports totals; drop --generate, --crosscheck and --depth"),
        (plot and not sweep_text,
         "stats draws a plot of a sweep; add --sweep DIM=V1,V2,... (bench --plot draws timings)"),
        (crosscheck == "torchstat" and batch != 1,
         "--crosscheck torchstat: torchstat always profiles one sample; use --batch 1"),
        (crosscheck and source.inputs.factory,
         "--crosscheck needs inputs described with --shape/--input (the single-tensor adapter rebuilds them); "
         "--inputs factories are not supported"),
    ]
    for refused, message in refusals:
        if refused:
            raise UsageError(message)
    if plot:
        check_writable(plot)


def _sweep(source: ModelSource, workload: Workload, out: OutputOptions, batch: int, sweep_text: str,
           plot: str | None) -> None:
    """``stats --sweep``: the totals at each value, and the chart when asked."""
    from modelprof.planning.sweep import parse_sweep, run_sweep
    from modelprof.reports.catalog import document

    dim, values = parse_sweep(sweep_text)
    swept = run_sweep(source, dim, values, workload, batch)
    emit(document(swept), out)
    if plot:
        from modelprof.render.plot import save_sweep_plot

        save_sweep_plot(swept, plot)
