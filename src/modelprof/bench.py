"""``modelprof bench``: time one batch size, or search for the largest batch and measure the sweep."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from .counting import describe_inputs
from .errors import Hint, ModelError, UsageError, one_line
from .options import Device, ModelSource
from .report import BenchReport, best_batch
from .timing import (
    ChildProcessProbe,
    InProcessProbe,
    Progress,
    TimingSettings,
    environment,
    find_max_batch,
    is_out_of_memory,
    measure,
)

ProgressFactory = Callable[[str], Progress | None]
"""Given a task label, returns a progress callback (or None for no progress display)."""


def run_bench(source: ModelSource, settings: TimingSettings, batch: int = 1, find_batch: bool = False,
              max_batch: int | None = None, tolerance: float = 0.01, memory_limit: int | None = None,
              compile_model: bool = False, threads: int | None = None,
              progress: ProgressFactory | None = None) -> BenchReport:
    """Measure ``source`` at ``batch``, or with ``find_batch`` search and measure batch sizes.

    On CPU with ``memory_limit`` every probe runs in a child process capped at that much memory; otherwise probes
    run here and out-of-memory errors are caught and recovered from.
    """
    if threads:
        torch.set_num_threads(threads)
    model = source.build_model() if not (find_batch and memory_limit is not None) else None
    dtype = source.dtype.value if source.dtype else "float32"
    compile_seconds = None
    if compile_model:
        model, compile_seconds = _compiled(model, source, batch)
    env = environment(source.device.value, dtype, settings.amp, source.channels_last, compile_model)
    args, kwargs = source.build_inputs(batch if not find_batch else 1)
    inputs = describe_inputs(args, kwargs)

    if not find_batch:
        try:
            result = measure(model, args, kwargs, batch, source.device.value, settings,
                             progress(f"batch {batch}") if progress else None)
        except Exception as exc:
            raise _failure(exc, batch) from exc
        return BenchReport(model=source.target, inputs=inputs, device=source.device.value, dtype=dtype,
                           environment=env, sweep=(result,), compile_seconds=compile_seconds)

    args = kwargs = None  # the search builds its own inputs per batch size

    def label(b: int) -> Progress | None:
        return progress(f"batch {b}") if progress else None

    if memory_limit is not None:
        probe = ChildProcessProbe(source, settings, memory_limit, threads)
    else:
        probe = InProcessProbe(source, model, settings, label)
    search = find_max_batch(probe, max_batch=max_batch, tolerance=tolerance)
    if search.max_batch is None:
        where = f"under the memory limit of {memory_limit:,} bytes" if memory_limit else "on this device"
        raise UsageError(f"even batch 1 does not fit {where}; raise the limit or use a smaller model or input",
                         option="memory_limit" if memory_limit else None)
    sweep = tuple(sorted((r for _, r in search.outcomes if r is not None), key=lambda r: r.batch))
    failed = tuple(sorted(b for b, r in search.outcomes if r is None))
    env["memory_limit"] = memory_limit
    return BenchReport(model=source.target, inputs=inputs, device=source.device.value, dtype=dtype,
                       environment=env, sweep=sweep, max_batch=search.max_batch, best_batch=best_batch(sweep),
                       probes=search.probes, failed=failed)


def _compiled(model: torch.nn.Module, source: ModelSource, batch: int) -> tuple[torch.nn.Module, float]:
    """``torch.compile`` the model and run it once; that first call's time is the compile time."""
    compiled = torch.compile(model)
    args, kwargs = source.build_inputs(batch)
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            compiled.eval()(*args, **kwargs)
        if source.device == Device.CUDA:
            torch.cuda.synchronize()
    except Exception as exc:
        raise ModelError(f"torch.compile failed: {type(exc).__name__}: {one_line(exc)}", option="compile") from exc
    return compiled, time.perf_counter() - started


def _failure(exc: Exception, batch: int) -> Exception:
    if is_out_of_memory(exc):
        return ModelError(f"batch {batch} ran out of memory; try a smaller batch, or search for the largest one",
                          option="batch")
    return ModelError(f"the forward pass failed at batch {batch}: {one_line(exc)}", hint=Hint.INPUTS)
