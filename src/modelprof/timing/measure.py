"""The timing collector: warm up, then time each call (CUDA events on a GPU, ``time.perf_counter`` on a CPU),
keep every raw sample, and find the largest batch that fits and the one that pays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from modelprof.counting.runtime import eval_inference
from modelprof.errors import ModelError, one_line
from modelprof.loading.source import ModelSource
from modelprof.prepare import Run, prepared
from modelprof.reports.bench import BatchResult, LatencyStats
from modelprof.workload import FORWARD, Optimizer, Precision, Workload


@dataclass(frozen=True)
class TimingSettings:
    """How to measure: warm-up until both ``warmup_calls`` and ``warmup_seconds`` are reached, then time calls
    for ``duration`` seconds, or exactly ``reps`` calls when given (at least ``min_reps`` either way)."""

    warmup_calls: int = 10
    warmup_seconds: float = 0.5
    duration: float = 3.0
    reps: int | None = None
    min_reps: int = 5


Progress = Callable[[float], None]
"""Called with the share of the measurement done so far (0..1)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and for a CPU allocation refused by the operating system."""
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def release_memory(device: torch.device) -> None:
    """Return what a failed or finished probe held: collect garbage, empty CUDA's cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def available_memory_bytes() -> int | None:
    """The memory this machine can give a new process now (Linux's MemAvailable), or None where unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CpuClock:
    """``time.perf_counter`` around each call."""

    def __init__(self) -> None:
        self.start = 0.0

    def begin(self) -> None:
        self.start = time.perf_counter()

    def end(self) -> float:
        return time.perf_counter() - self.start


class CudaClock:
    """A pair of CUDA events around each call; ``start.elapsed_time(end)`` is in milliseconds."""

    def __init__(self) -> None:
        self.start_event = torch.cuda.Event(enable_timing=True)
        self.end_event = torch.cuda.Event(enable_timing=True)

    def begin(self) -> None:
        self.start_event.record()

    def end(self) -> float:
        self.end_event.record()
        self.end_event.synchronize()
        return self.start_event.elapsed_time(self.end_event) / 1e3


def measure(model: nn.Module, args: tuple, kwargs: dict, batch: int, device: torch.device | str,
            settings: TimingSettings = TimingSettings(), progress: Progress | None = None,
            workload: Workload = FORWARD, collectives: bool = False) -> BatchResult:
    """Warm up, then time ``workload`` on ``model(*args, **kwargs)`` call by call: a forward in eval mode under
    ``torch.inference_mode()``, or a training step. The workload's precision is applied to the model in place (as
    :func:`modelprof.prepare.prepared` does for a model modelprof owns: timing keeps no second copy of it).

    On CUDA each call sits between two CUDA events (latency) and a separate pipelined run with no
    synchronization between calls gives ``pipelined_throughput``; peak memory is
    ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. On CPU each call sits between two
    ``time.perf_counter`` readings and peak memory is the process's peak resident memory.
    """
    device = torch.device(device)
    with prepared(model, args, kwargs, workload, owned=True) as run:
        samples, pipelined, peak, comm = _timed(run, batch, device, settings, workload, progress, collectives)
    stats = LatencyStats.from_samples(samples)
    return BatchResult(batch=batch, latency=stats, throughput=batch / stats.mean, peak_memory=peak,
                       pipelined_throughput=pipelined, collectives=comm)


#: Profiler events of a process group's backend: the collectives as they ran (gloo's worker threads, NCCL kernels).
_BACKEND_EVENTS = ("gloo:", "nccl")


def _collective_seconds(call: Callable[[], object], device: torch.device) -> float:
    """Seconds the backend spent in collectives during one more ``call``, under ``torch.profiler``: gloo's events
    on CPU, kernels whose name says NCCL on CUDA (each rank makes this call, so the collectives still pair up)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        call()
        if cuda:
            torch.cuda.synchronize(device)
    total_us = 0.0
    for event in prof.events():
        name = event.name.lower()
        if cuda and "nccl" in name and event.device_type == torch.autograd.DeviceType.CUDA:
            total_us += event.device_time
        elif not cuda and name.startswith(_BACKEND_EVENTS):
            total_us += event.cpu_time
    return total_us / 1e6


def _timed(run: Run, batch: int, device: torch.device, settings: TimingSettings, workload: Workload,
           progress: Progress | None, collectives: bool = False) -> tuple[list[float], float | None, int, float | None]:
    """The raw samples, the pipelined throughput (CUDA), the peak memory of one measurement and, with
    ``collectives``, the seconds of one more call spent in collectives (after the peak is read)."""
    cuda = device.type == "cuda"
    clock = CudaClock() if cuda else CpuClock()
    context, call = _how_to_run(run, workload)
    with context:
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        started, calls = time.perf_counter(), 0
        while not _all_done(calls >= settings.warmup_calls
                            and time.perf_counter() - started >= settings.warmup_seconds):
            call()
            calls += 1
        if cuda:
            torch.cuda.synchronize(device)
        samples: list[float] = []
        begun = time.perf_counter()
        while True:
            clock.begin()
            call()
            samples.append(clock.end())
            done = share_done(samples, time.perf_counter() - begun, settings)
            if progress:
                progress(done)
            if _all_done(done >= 1.0):
                break
        pipelined = _pipelined_throughput(call, batch, len(samples)) if cuda else None
        peak = torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()
        comm = _collective_seconds(call, device) if collectives else None
    return samples, pipelined, peak, comm


def _all_done(done: bool) -> bool:
    """``done``, or in a job of several processes (``bench --gpus``), True once every rank is done: each rank runs
    as many calls as the others, as its collectives need (a flag all-reduced after each call, outside the timed
    part)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_backend() == "fake":
        return done
    nccl = dist.get_backend() == "nccl"
    flag = torch.tensor([0 if done else 1], device=torch.device("cuda", torch.cuda.current_device()) if nccl
                        else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) == 0


def share_done(samples: list[float], elapsed: float, settings: TimingSettings) -> float:
    """Share of the measurement done: by call count with ``reps``, else by time (with at least ``min_reps``)."""
    if settings.reps is not None:
        return len(samples) / settings.reps
    if len(samples) < settings.min_reps:
        return min(elapsed / settings.duration, len(samples) / settings.min_reps)
    return min(1.0, elapsed / settings.duration)


def _how_to_run(run: Run, workload: Workload) -> tuple[contextlib.AbstractContextManager, Callable[[], object]]:
    """The context to measure in and one call: a forward in eval and inference mode, or for a training step the
    step in training mode (the optimizer's learning rate is 0, and training flags, buffers and gradients are
    restored afterwards, as ``stats --train`` does; the loss is the sum of the outputs). Under ``--amp`` the
    forward (and the loss) run under autocast, the backward and the optimizer step outside it, as PyTorch's AMP
    recipe has it."""
    model, args, kwargs = run.model, run.args, run.kwargs
    if workload.training is None:
        def forward() -> object:
            with run.autocast():
                return model(*args, **kwargs)

        return eval_inference(model), forward
    from modelprof.counting.train import (
        build_optimizer,
        default_loss,
        pipeline_step,
        trainable_parameters,
        training,
        zero1_group,
    )

    optimizer = build_optimizer(workload.training.optimizer, trainable_parameters(model), foreach=None,
                                sharded=workload.parallel.data == "zero1", group=zero1_group(run))
    # a pipeline stage (--pp) runs its schedule over the microbatches, the loss on the last stage
    pipelined = pipeline_step(run, lambda output, target: default_loss(output)) if run.pipeline else None

    def step() -> None:
        if pipelined is not None:  # its schedule runs the backward of each microbatch between the forwards
            with run.autocast():
                pipelined()
        else:
            with run.autocast():
                loss = default_loss(model(*args, **kwargs))
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return training(model), step


def _pipelined_throughput(call: Callable[[], object], batch: int, calls: int) -> float:
    """Samples per second over ``calls`` back-to-back calls with no synchronization in between."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        call()
    end.record()
    end.synchronize()
    return calls * batch / (start.elapsed_time(end) / 1e3)


def environment(device: torch.device | str, precision: Precision, compiled: bool) -> dict:
    """What a result depends on: torch version, device name, threads, dtype and the options used."""
    device = torch.device(device)
    return {"torch": torch.__version__, "device": device.type, "device_name": device_name(device),
            "threads": torch.get_num_threads(), "dtype": precision.dtype_name, "amp": precision.amp,
            "channels_last": precision.channels_last,
            "compile": compiled}


def device_name(device: torch.device | str) -> str:
    """The GPU's name on CUDA (``NVIDIA H100 80GB HBM3``), the processor's on CPU."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------------------------------------------
# The batch search
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """What the batch search found: the largest batch that ran, the forward passes it took, every probe's
    outcome (a measured result, or None where it ran out of memory)."""

    max_batch: int | None
    probes: int
    outcomes: tuple[tuple[int, BatchResult | None], ...]


def find_max_batch(probe: Callable[[int], BatchResult | None], max_batch: int | None = None,
                   tolerance: float = 0.01, start: int = 1) -> SearchResult:
    """The largest batch for which ``probe`` succeeds: grow geometrically (×2) until the first failure, then
    bisect until the gap is within ``tolerance`` of the answer (at least 1).

    ``probe(batch)`` runs one forward pass at that batch and returns its result, or None on out-of-memory. The
    answer is always a batch that was run successfully; ``max_batch`` caps the search. Cost: about
    2·log2(answer) + 1 probes.
    """
    outcomes: list[tuple[int, BatchResult | None]] = []

    def attempt(batch: int) -> bool:
        result = probe(batch)
        outcomes.append((batch, result))
        return result is not None

    low, high = 0, None  # low: largest success so far; high: smallest failure so far
    batch = start
    while True:
        if max_batch is not None and batch >= max_batch:
            batch = max_batch
        if attempt(batch):
            low = batch
            if max_batch is not None and batch >= max_batch:
                break
            batch *= 2
        else:
            high = batch
            break
    if low == 0:
        return SearchResult(None, len(outcomes), tuple(outcomes))
    while high is not None and high - low > max(1, math.floor(tolerance * low)):
        middle = (low + high) // 2
        if attempt(middle):
            low = middle
        else:
            high = middle
    return SearchResult(low, len(outcomes), tuple(outcomes))


class InProcessProbe:
    """Probe batch sizes in this process (CUDA, or CPU with only --max-batch as a bound).

    Every out-of-memory error is caught; the inputs and outputs are dropped, garbage collected and CUDA's cache
    emptied before the next probe.
    """

    def __init__(self, source: ModelSource, model: nn.Module, settings: TimingSettings,
                 progress: Callable[[int], Progress | None] | None = None, workload: Workload = FORWARD) -> None:
        self.source, self.model, self.settings, self.progress = source, model, settings, progress
        self.workload = workload

    def __call__(self, batch: int) -> BatchResult | None:
        device = torch.device(self.source.device.value)
        try:
            args, kwargs = self.source.build_inputs(batch)
            return measure(self.model, args, kwargs, batch, device, self.settings,
                           self.progress(batch) if self.progress else None, self.workload)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            return None
        finally:
            args = kwargs = None
            release_memory(device)


_THREAD_FAILURE = "Thread creation failed"  # libgomp aborts like this when the cap leaves no room for a stack
#: oneDNN's error when it cannot allocate a primitive's scratch memory; under the probe's cap that is the cap
_ONEDNN_FAILURE = "could not create a primitive"


class ChildProcessProbe:
    """Probe each batch size in a fresh child process whose address space is capped (RLIMIT_AS) at the memory
    the runtime had after importing torch plus ``memory_limit``: exceeding the limit is a real allocation failure
    there, the parent survives it, and each probe's peak memory is its own."""

    def __init__(self, source: ModelSource, settings: TimingSettings, memory_limit: int,
                 threads: int | None = None, workload: Workload = FORWARD) -> None:
        self.source, self.settings, self.memory_limit, self.threads = source, settings, memory_limit, threads
        self.workload = workload

    def __call__(self, batch: int) -> BatchResult | None:
        request = {"source": self.source.to_dict(), "batch": batch, "memory_limit": self.memory_limit,
                   "threads": self.threads, "settings": dataclasses.asdict(self.settings),
                   "workload": self.workload.to_dict(), "path": sys.path}
        env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # glibc reserves 64 MiB of address space per arena
        done = subprocess.run([sys.executable, "-m", "modelprof.timing.probe"], input=json.dumps(request),
                              capture_output=True, text=True, env=env, check=False)
        lines = done.stdout.strip().splitlines()
        answer = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
        if "result" in answer:
            return BatchResult.from_dict(answer["result"])
        if answer.get("oom") or done.returncode < 0 or _THREAD_FAILURE in done.stderr:
            return None  # refused allocation, killed for memory, or no memory left for a thread stack
        detail = answer.get("error") or (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"the probe at batch {batch} failed: {detail}")


def probe_in_child(request: dict) -> dict:
    """The child's side of :class:`ChildProcessProbe`: cap the address space, build, measure, answer."""
    if request.get("threads"):
        torch.set_num_threads(request["threads"])
    # start the thread pools first, so their stacks belong to the runtime and not to the probe's allowance
    (torch.ones(1 << 20) + 1).sum()
    torch.ones(64, 64) @ torch.ones(64, 64)
    workload = Workload.from_dict(request["workload"])
    if workload.training is not None:
        _load_training_runtime(workload.training.optimizer)
    limit = _address_space_bytes() + int(request["memory_limit"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    source = ModelSource.from_dict(request["source"])
    settings = TimingSettings(**request["settings"])
    try:
        model = source.build_model()
        args, kwargs = source.build_inputs(request["batch"])
        result = measure(model, args, kwargs, request["batch"], "cpu", settings, workload=workload)
    except Exception as exc:
        if is_out_of_memory(exc) or _ONEDNN_FAILURE in str(exc):
            return {"oom": True}
        return {"error": f"{type(exc).__name__}: {one_line(exc)}"}
    return {"result": result.to_dict()}


def _load_training_runtime(optimizer: Optimizer) -> None:
    """Run a training step of one tiny tensor, so that what any training step loads once (the optimizer's code,
    whose first step imports ``torch._dynamo``: about 70 MiB) belongs to the runtime, not to the allowance."""
    from modelprof.counting.train import build_optimizer

    weight = nn.Parameter(torch.ones(8))
    step = build_optimizer(optimizer, [weight], foreach=None)
    (weight * 2).sum().backward()
    step.step()


def _address_space_bytes() -> int:
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("cannot read VmSize from /proc/self/status")
