"""``modelprof bench``: latency and throughput of a forward, a training step or a generation; the largest and the
best batch; the time of every layer against the roofline."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import click

from modelprof.cli.common import (
    check_writable,
    emit,
    model_command,
    parse_bytes_option,
    parse_count_option,
    progress_bar,
)
from modelprof.errors import UsageError
from modelprof.loading.source import Device, ModelSource, OutputOptions
from modelprof.workload import Workload


@click.command()
@model_command(generate="Time generation of a transformers causal LM: time to first token and per-token latency "
               "(--reps generations, default 3).", min_new=2)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Warm-up calls before timing (also at least --warmup-time).")
@click.option("--warmup-time", type=click.FloatRange(min=0), default=0.5, show_default=True, metavar="SECONDS")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=3.0, show_default=True,
              metavar="SECONDS", help="Time budget of the measurement per batch size.")
@click.option("--reps", type=click.IntRange(min=1), help="Time exactly this many calls instead of --duration.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's).")
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the model; compile time is reported apart from the timed calls.")
@click.option("--find-batch", is_flag=True, help="Find the largest batch that fits and the best-throughput one.")
@click.option("--max-batch", type=click.IntRange(min=1), help="Upper bound for --find-batch.")
@click.option("--batch-tolerance", type=click.FloatRange(min=0, max=1), default=0.01, show_default=True,
              help="Stop bisecting when the gap is within this share of the answer.")
@click.option("--memory-limit", callback=parse_bytes_option, metavar="SIZE",
              help="CPU: probe each batch in a child process capped at this much memory (4GiB, 500MB).")
@click.option("--layers", is_flag=True, help="Also time every layer (every row at --depth) and put it against the "
              "device's roofline.")
@click.option("--depth", type=click.IntRange(min=1), help="With --layers: rows folded at this depth of the module "
              "tree (default: leaf rows, as stats).")
@click.option("--peak-flops", callback=parse_count_option, metavar="N",
              help="With --layers: the device's peak MAdd/s (FLOP/s), e.g. 989T; default: calibrated.")
@click.option("--peak-bandwidth", callback=parse_bytes_option, metavar="SIZE",
              help="With --layers: the device's peak memory bandwidth per second, e.g. 3.35TB; default: calibrated.")
@click.option("--sweep", "sweep_text", metavar="DIM=V1,V2,...", help="Time at each value of the batch or of a named "
              "input size (--input input_ids=SEQ:int64 --sweep seq=128,256) and say how latency grows.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Save a chart (needs matplotlib): throughput against "
              "batch, or with --layers the roofline.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def bench(source: ModelSource, workload: Workload, out: OutputOptions, batch: int, warmup: int, warmup_time: float,
          duration: float, reps: int | None, sweep_text: str | None, plot: str | None, quiet: bool,
          **options: Any) -> None:
    """Latency and throughput of TARGET; with --find-batch, the largest batch that fits and the best one; with
    --layers, the time of every layer against the device's roofline.

    Each call is timed alone (CUDA events on a GPU, time.perf_counter on a CPU) after a warm-up, in eval mode
    under torch.inference_mode(); every raw sample is kept in the JSON output.
    """
    find_batch, max_batch, memory_limit = options["find_batch"], options["max_batch"], options["memory_limit"]
    _check_bench_options(source, find_batch, memory_limit, options["compile_model"])
    if workload.parallel.sharded:
        _bench_ranks(source, workload, out, batch, warmup, warmup_time, duration, reps, sweep_text, options)
        return
    if workload.generation:
        _bench_generation(source, workload, out, batch, reps, options)
        return
    if options["layers"] and find_batch:
        raise UsageError("--layers times one batch; drop --find-batch, or find the batch first and then time its "
                         "layers with --batch N")
    memory_limit, limit_from = _memory_limit(source, find_batch, max_batch, memory_limit)
    if plot:
        check_writable(plot)
    from modelprof.render.plot import save_plot
    from modelprof.reports.catalog import document
    from modelprof.timing.bench import BenchOptions, run_bench
    from modelprof.timing.measure import TimingSettings

    if workload.training and options["layers"]:
        raise UsageError("--layers times the forward; drop --train or --layers")
    settings = TimingSettings(warmup_calls=warmup, warmup_seconds=warmup_time, duration=duration, reps=reps)
    if sweep_text:
        report = _bench_sweep(source, workload, settings, sweep_text, batch, options)
    else:
        options["tolerance"] = options.pop("batch_tolerance")
        bench_options = BenchOptions(batch=batch, **{**options, "memory_limit": memory_limit})
        with progress_bar(not quiet and sys.stderr.isatty()) as progress:
            report = run_bench(source, settings, bench_options, workload, progress)
    if limit_from:
        report = replace(report, environment={**report.environment, "memory_limit_from": limit_from})
    emit(document(report), out)
    if plot:
        save_plot(report, plot)


def _bench_ranks(source: ModelSource, workload: Workload, out: OutputOptions, batch: int, warmup: int,
                 warmup_time: float, duration: float, reps: int | None, sweep_text: str | None,
                 options: dict[str, Any]) -> None:
    """``bench --gpus N``: every rank of the job a real process, each timed (:mod:`modelprof.timing.ranks`)."""
    other = [name for name, on in (("--find-batch", options["find_batch"]), ("--layers", options["layers"]),
                                   ("--compile", options["compile_model"]), ("--sweep", sweep_text),
                                   ("--generate", workload.generation), ("--memory-limit", options["memory_limit"]))
             if on]
    if other:
        raise UsageError(f"bench --gpus times one batch of the job on every rank; drop {', '.join(other)}")
    from modelprof.reports.catalog import document
    from modelprof.timing.bench import bench_report
    from modelprof.timing.measure import TimingSettings
    from modelprof.timing.ranks import run_ranks

    settings = TimingSettings(warmup_calls=warmup, warmup_seconds=warmup_time, duration=duration, reps=reps)
    report = run_ranks(source, workload, settings, batch, options["threads"], bench_report(source, workload, batch))
    emit(document(report), out)


def _memory_limit(source: ModelSource, find_batch: bool, max_batch: int | None, memory_limit: int | None
                  ) -> tuple[int | None, str | None]:
    """The memory limit of a CPU batch search and where it comes from: --memory-limit, or else (with no
    --max-batch either) the memory available on this machine."""
    if memory_limit is not None:
        return memory_limit, "--memory-limit"
    if not (find_batch and source.device == Device.CPU and max_batch is None):
        return None, None
    from modelprof.timing.measure import available_memory_bytes

    available = available_memory_bytes()
    if available is None:
        raise UsageError("--find-batch on cpu needs --memory-limit (e.g. 4GiB) or --max-batch here: this "
                         "system does not say how much memory is available")
    return available, "the memory available on this machine"


def _bench_sweep(source: ModelSource, workload: Workload, settings: Any, sweep_text: str, batch: int,
                 options: dict[str, Any]) -> Any:
    """``bench --sweep``: one timing at each value of the batch or of a named input size."""
    if options["find_batch"] or options["layers"] or options["compile_model"]:
        raise UsageError("--sweep times each value once; drop --find-batch, --layers and --compile")
    from modelprof.planning.sweep import bench_sweep, parse_sweep

    dim, values = parse_sweep(sweep_text)
    return bench_sweep(source, settings, dim, values, workload, batch, options["threads"])


def _bench_generation(source: ModelSource, workload: Workload, out: OutputOptions, batch: int, reps: int | None,
                      options: dict[str, Any]) -> None:
    """``bench --generate``: time to first token and per-token latency."""
    if any(options[k] for k in ("find_batch", "layers", "compile_model")):
        raise UsageError("--generate times one batch of generations; drop --find-batch, --layers and --compile")
    from modelprof.reports.catalog import document
    from modelprof.timing.bench import run_generate_bench

    emit(document(run_generate_bench(source, workload, batch, reps or 3, options["threads"])), out)


def _check_bench_options(source: ModelSource, find_batch: bool, memory_limit: int | None,
                         compile_model: bool) -> None:
    """Refuse option combinations that cannot work, before anything is built."""
    if source.device == Device.META:
        raise UsageError("bench --device meta: nothing really runs on meta, so there is nothing to time; "
                         "use --device cpu or cuda (stats --device meta counts without running)")
    if memory_limit is not None and source.device != Device.CPU:
        raise UsageError("--memory-limit applies to --device cpu; on cuda the GPU's own memory is the limit")
    if compile_model and find_batch:
        raise UsageError("--compile with --find-batch is not supported: every batch size would recompile; "
                         "find the batch first, then time it with --compile --batch N")
