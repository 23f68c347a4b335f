"""``modelprof bench``: time one batch size, or search for the largest batch and measure the sweep."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from modelprof.counting.forward import count_forward
from modelprof.counting.generate import make_prompt, time_generation
from modelprof.counting.mode import describe_inputs
from modelprof.errors import Hint, ModelError, UsageError, one_line
from modelprof.loading.source import MODEL_DTYPES, Device, ModelSource
from modelprof.prepare import prepared
from modelprof.reports.bench import BenchReport, LayerProfile, LayerTiming, best_batch
from modelprof.reports.stats import fold_name
from modelprof.timing.calibrate import calibrated
from modelprof.timing.layertime import UNATTRIBUTED, measure_layers
from modelprof.timing.measure import (
    ChildProcessProbe,
    InProcessProbe,
    Progress,
    TimingSettings,
    environment,
    find_max_batch,
    is_out_of_memory,
    measure,
)
from modelprof.timing.roofline import Peaks
from modelprof.workload import FORWARD, Workload

ProgressFactory = Callable[[str], Progress | None]
"""Given a task label, returns a progress callback (or None for no progress display)."""


@dataclass(frozen=True)
class BenchOptions:
    """What ``bench`` measures beyond the timing settings: the batch (or a search for the largest one, bounded
    by ``max_batch`` and, on CPU, ``memory_limit`` bytes per child process), compilation, CPU threads, and with
    ``layers`` the time of every row at ``depth`` against the device's peaks (given, or calibrated)."""

    batch: int = 1
    find_batch: bool = False
    max_batch: int | None = None
    tolerance: float = 0.01
    memory_limit: int | None = None
    compile_model: bool = False
    threads: int | None = None
    layers: bool = False
    depth: int | None = None
    peak_flops: float | None = None
    peak_bandwidth: float | None = None


def run_bench(source: ModelSource, settings: TimingSettings, options: BenchOptions = BenchOptions(),
              workload: Workload = FORWARD, progress: ProgressFactory | None = None) -> BenchReport:
    """Time ``workload`` (a forward or a training step) on ``source`` at one batch (with ``options.layers``, layer
    by layer too), or search batch sizes.

    On CPU with a memory limit every probe runs in a child process capped at that much memory; otherwise probes
    run here and out-of-memory errors are caught and recovered from.
    """
    if options.threads:
        torch.set_num_threads(options.threads)
    in_child = options.find_batch and options.memory_limit is not None
    model = None if in_child else source.build_model()
    compile_seconds = None
    if options.compile_model:
        model, compile_seconds = _compiled(model, source, options.batch, workload)
    report = bench_report(source, workload, options.batch if not options.find_batch else 1, options.compile_model,
                          compile_seconds)
    args, kwargs = source.build_inputs(options.batch if not options.find_batch else 1)
    if options.find_batch:
        return _search(source, settings, options, model, report, progress, workload)
    batch = options.batch
    try:
        result = measure(model, args, kwargs, batch, source.device.value, settings,
                         progress(f"batch {batch}") if progress else None, workload)
        layers = (profile_layers(model, args, kwargs, source, settings, options, result.latency.median, workload)
                  if options.layers else None)
    except Exception as exc:
        raise _failure(exc, batch) from exc
    return replace(report, sweep=(result,), layers=layers)


def bench_report(source: ModelSource, workload: Workload, batch: int, compiled: bool = False,
                 compile_seconds: float | None = None) -> BenchReport:
    """The report a timing fills: the model, its inputs at ``batch``, the device, the precision and the
    environment (the workload's training step and checkpointing), nothing measured yet."""
    env = environment(source.device.value, workload.precision, compiled)
    if workload.training is not None:
        env.update(train=True, optimizer=workload.training.optimizer.value)
    if workload.checkpoint.modules:
        env.update(checkpoint=list(workload.checkpoint.modules))
    args, kwargs = source.build_inputs(batch)
    return BenchReport(model=source.target, inputs=_inputs(args, kwargs, workload), device=source.device.value,
                       dtype=workload.precision.dtype_name, environment=env, sweep=(),
                       compile_seconds=compile_seconds)


def run_generate_bench(source: ModelSource, workload: Workload, batch: int, runs: int = 3,
                       threads: int | None = None) -> BenchReport:
    """Time ``workload``'s generation: time to first token and per-token latency of its new tokens after its
    prompt, over ``runs`` generations after one untimed one."""
    if threads:
        torch.set_num_threads(threads)
    generation = workload.generation
    model = source.build_model()
    prompt = make_prompt(model, batch, generation.prompt_len, source.device.value)
    try:
        with prepared(model, (prompt,), {}, workload, owned=True) as run:
            timing = time_generation(run.model, prompt, generation.new_tokens, runs=runs)
    except ModelError:
        raise
    except Exception as exc:
        raise _failure(exc, batch) from exc
    env = environment(source.device.value, workload.precision, False)
    return BenchReport(model=source.target, inputs=describe_inputs((prompt,), {}), device=source.device.value,
                       dtype=workload.precision.dtype_name, environment=env, sweep=(), generation=timing)


def _search(source: ModelSource, settings: TimingSettings, options: BenchOptions, model: torch.nn.Module | None,
            report: BenchReport, progress: ProgressFactory | None, workload: Workload) -> BenchReport:
    """The batch search: every probe measured, the largest batch that ran, the best one."""

    def label(b: int) -> Progress | None:
        return progress(f"batch {b}") if progress else None

    if options.memory_limit is not None:
        probe = ChildProcessProbe(source, settings, options.memory_limit, options.threads, workload)
    else:
        probe = InProcessProbe(source, model, settings, label, workload)
    search = find_max_batch(probe, max_batch=options.max_batch, tolerance=options.tolerance)
    if search.max_batch is None:
        limit = options.memory_limit
        where = f"under the memory limit of {limit:,} bytes" if limit else "on this device"
        raise UsageError(f"even batch 1 does not fit {where}; raise the limit or use a smaller model or input",
                         option="memory_limit" if limit else None)
    sweep = tuple(sorted((r for _, r in search.outcomes if r is not None), key=lambda r: r.batch))
    failed = tuple(sorted(b for b, r in search.outcomes if r is None))
    return replace(report, environment={**report.environment, "memory_limit": options.memory_limit}, sweep=sweep,
                   max_batch=search.max_batch, best_batch=best_batch(sweep), probes=search.probes, failed=failed)


def profile_layers(model: torch.nn.Module, args: tuple, kwargs: dict, source: ModelSource, settings: TimingSettings,
                   options: BenchOptions, forward_median: float, workload: Workload = FORWARD) -> LayerProfile:
    """Time every stats row (folded at ``options.depth``) and join it with its counted MAdd and bytes.

    The rows are those of ``stats`` on the same model and inputs: a module's self time goes to its row (its
    ancestor's at ``depth``), and the self time of modules without a row goes to ``(unattributed)``.
    """
    forward = Workload(precision=workload.precision)
    with prepared(model, args, kwargs, forward, owned=True) as run:
        counted = count_forward(run, model_name=source.target)
        owners = {row.name: fold_name(row.name, options.depth) for row in counted.layers}
        samples = measure_layers(run.model, run.args, run.kwargs, source.device.value, owners.get, settings)
    folded = counted.fold(options.depth) if options.depth is not None else counted
    rows = [LayerTiming(r.name, r.label, r.calls, tuple(samples.get(r.name, ())), r.madd, r.mem_read + r.mem_write)
            for r in folded.layers if r.name in samples]
    if UNATTRIBUTED in samples:
        rows.append(LayerTiming(UNATTRIBUTED, "Python between layers, hooks", 0, tuple(samples[UNATTRIBUTED])))
    return LayerProfile(tuple(rows), forward_median, options.depth, _peaks(source, options, workload))


def _peaks(source: ModelSource, options: BenchOptions, workload: Workload) -> Peaks:
    """The peaks given as options, else the calibrated ones for this device and dtype (measured once, cached)."""
    dtype = workload.precision.dtype_name
    if options.peak_flops and options.peak_bandwidth:
        return Peaks(options.peak_flops, options.peak_bandwidth, "given")
    measured = calibrated(source.device.value, dtype)
    return Peaks(options.peak_flops or measured.flops, options.peak_bandwidth or measured.bandwidth,
                 measured.source if not (options.peak_flops or options.peak_bandwidth) else "given and "
                 + measured.source, measured.device, measured.datasheet_flops, measured.datasheet_bandwidth)


def _compiled(model: torch.nn.Module, source: ModelSource, batch: int, workload: Workload
              ) -> tuple[torch.nn.Module, float]:
    """``torch.compile`` the model (as the workload prepares it) and run it once; that first call's time is the
    compile time."""
    with prepared(model, *source.build_inputs(batch), workload, owned=True) as run:
        compiled = torch.compile(run.model)
        args, kwargs = run.args, run.kwargs
    started = time.perf_counter()
    try:
        with torch.inference_mode(), run.autocast():
            compiled.eval()(*args, **kwargs)
        if source.device == Device.CUDA:
            torch.cuda.synchronize()
    except Exception as exc:
        raise ModelError(f"torch.compile failed: {type(exc).__name__}: {one_line(exc)}", option="compile") from exc
    return compiled, time.perf_counter() - started


def _inputs(args: tuple, kwargs: dict, workload: Workload) -> tuple:
    """The inputs as they run: a ``--dtype`` casts the float ones."""
    dtype = workload.precision.dtype
    floats = {d.value for d in MODEL_DTYPES}
    return tuple(replace(i, dtype=dtype.value) if dtype and i.dtype in floats else i
                 for i in describe_inputs(args, kwargs))


def _failure(exc: Exception, batch: int) -> Exception:
    if is_out_of_memory(exc):
        return ModelError(f"batch {batch} ran out of memory; try a smaller batch, or search for the largest one",
                          option="batch")
    return ModelError(f"the forward pass failed at batch {batch}: {one_line(exc)}", hint=Hint.INPUTS)
