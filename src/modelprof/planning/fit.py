"""``modelprof fit``: the largest batch whose peak memory fits a given memory, predicted without running out of
it.

The model is built on the meta device (no storage) and counted at a few batch sizes: each run's peak of live tensor
memory (:mod:`modelprof.counting.memory`) is exact for that batch, phase by phase. The memory model is one line
per phase, ``peak(b) = fixed + per_sample · b``; the answer is counted once more, and bisected down if it does not fit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace

from torch import nn

from modelprof import units
from modelprof.counting.stats import count_source
from modelprof.errors import UsageError
from modelprof.loading.source import Device, ModelSource
from modelprof.reports.fit import Fit, FitLine, FitPoint, FitReport, GpuFit, GpuPoint
from modelprof.workload import FORWARD, Workload

#: Memory of common accelerators, in bytes (the device's memory; the runtime itself takes some of it).
DEVICE_MEMORY = {
    "A100-40GB": 40 * 2**30, "A100": 80 * 2**30, "A100-80GB": 80 * 2**30, "H100": 80 * 2**30,
    "H100-94GB": 94 * 2**30, "H200": 141 * 10**9, "B200": 192 * 10**9, "L4": 24 * 2**30, "L40S": 48 * 2**30,
    "A10": 24 * 2**30, "RTX4090": 24 * 2**30, "RTX3090": 24 * 2**30, "V100": 32 * 2**30, "T4": 16 * 2**30,
}

#: The batch sizes the memory model is drawn through (the first two) and checked at (the third).
BATCHES = (2, 4, 8)
#: The same for sequence lengths.
LENGTHS = (128, 256, 512)


def device_memory(name: str) -> int | None:
    """The memory of a known device, by name (case and dashes ignored), or None."""
    key = name.upper().replace("_", "").replace(" ", "")
    table = {k.upper().replace("-", "").replace("_", ""): v for k, v in DEVICE_MEMORY.items()}
    return table.get(key.replace("-", ""))


def phase_peaks(source: ModelSource, workload: Workload, batch: int, model: nn.Module | None = None
                ) -> dict[str, int]:
    """The exact peak of live tensor memory in each phase of ``workload`` (forward; backward and optimizer for a
    training step; decode for a generation, the KV cache included) at ``batch``, on ``source``'s device (fit passes
    a meta source); ``model`` is ``source``'s, built already."""
    if model is not None and workload.parallel.sharded:  # sharding rewrites the model it is given: count a copy
        model = copy.deepcopy(model)  # (cheap on meta: no storage)
    return count_source(source, workload, batch, model).memory.phase_peaks


Measure = Callable[[int], dict[str, int]]


def fit_size(measure: Measure, memory: int, points: tuple[int, int, int], what: str = "batch"
             ) -> tuple[int, int, dict[str, tuple[int, int]], dict[int, int]]:
    """The largest size whose peak fits ``memory``: (size, its peak, each phase's line, the peaks measured).

    Each phase's peak is taken as a line in the size (weights, gradients and optimizer state stay, activations and
    caches grow), and the run's peak is the highest of them: lines through the first two points give each phase's
    largest size, and the smallest of those is the first answer. It is counted once more: if it does not fit (a
    peak that grows faster than a line, as attention's scores do with the sequence), a bisection below it finds the
    largest that does; if the next size fits too, the search doubles upward and then bisects.
    """
    measured: dict[int, dict[str, int]] = {}
    counted = measure

    def measure(size: int) -> dict[str, int]:  # each size counted once, however often the search asks
        if size not in measured:
            measured[size] = counted(size)
        return measured[size]

    runs = {x: measure(x) for x in points}
    low, high = points[0], points[1]
    if max(runs[low].values()) > memory:  # the lines' first point does not fit: the answer is below it, if any
        if max(measure(1).values()) > memory:
            raise UsageError(f"even {what} 1 needs {max(measure(1).values()):,} bytes, more than the {memory:,} "
                             "given")
        best, peak = _bisect(measure, memory, 1, low)
        return best, peak, _lines(runs, low, high), {x: max(r.values()) for x, r in runs.items()}
    lines = _lines(runs, low, high)
    limits = [(memory - fixed) // slope for fixed, slope in lines.values() if slope > 0]
    if not limits:
        raise UsageError(f"the peak does not grow with the {what}, so no {what} is the largest; check the inputs")
    best = max(min(limits), low)
    peak = max(measure(best).values())
    if peak > memory:
        best, peak = _bisect(measure, memory, low, best)
    elif max(measure(best + 1).values()) <= memory:  # a peak that grows slower than the line: search upward
        step = max(1, best)
        while max(measure(best + step).values()) <= memory:
            best, step = best + step, step * 2
        best, peak = _bisect(measure, memory, best, best + step)
    return best, peak, lines, {x: max(r.values()) for x, r in runs.items()}


def _lines(runs: dict[int, dict[str, int]], low: int, high: int) -> dict[str, tuple[int, int]]:
    """Each phase's line (fixed, per unit) through its peaks at ``low`` and ``high``."""
    return {phase: (runs[low][phase] - (runs[high][phase] - runs[low][phase]) // (high - low) * low,
                    (runs[high][phase] - runs[low][phase]) // (high - low)) for phase in runs[low]}


def _bisect(measure: Measure, memory: int, fits: int, fails: int) -> tuple[int, int]:
    """The largest size in [fits, fails) whose peak fits, and that peak."""
    peak = max(measure(fits).values())
    while fails - fits > 1:
        middle = (fits + fails) // 2
        middle_peak = max(measure(middle).values())
        if middle_peak <= memory:
            fits, peak = middle, middle_peak
        else:
            fails = middle
    return fits, peak


def _fit(memory: int, workload: Workload, memory_source: str, what: str, result: tuple
            ) -> Fit:
    best, peak, lines, peaks = result
    fixed, slope = max(lines.values(), key=lambda line: line[0] + line[1] * best)
    return Fit(memory=memory, train=workload.training is not None,
               peaks=tuple(FitPoint(*point) for point in sorted(peaks.items())), fixed=fixed, per_sample=slope,
               max_batch=best, peak_at_max=peak, memory_source=memory_source,
               lines=tuple(FitLine(phase, f, k) for phase, (f, k) in lines.items()), dim=what,
               amp=workload.precision.amp)


def fit_batch(source: ModelSource, memory: int, workload: Workload = FORWARD, memory_source: str = "") -> Fit:
    """The largest batch whose peak fits ``memory`` bytes (of ``workload``: a forward, a training step, or a
    prefill and its decode steps), from shape-only runs; see :func:`fit_size`."""
    meta = replace(source, device=Device.META)
    model = meta.build_model()

    def measure(b: int) -> dict[str, int]:
        return phase_peaks(meta, workload, b, model)

    return _fit(memory, workload, memory_source, "batch", fit_size(measure, memory, BATCHES))


def fit_microbatch(source: ModelSource, memory: int, workload: Workload, memory_source: str = "") -> Fit:
    """``--pp``: the largest microbatch (a step's batch is the microbatch times the microbatches) on which every
    stage's peak fits ``memory``, each phase's peak the highest of the stages', from shape-only runs (the stages
    cut and run on fake CPU tensors in place of meta ones). See :func:`fit_size`."""
    p = workload.parallel
    meta = replace(source, device=Device.META)
    model = meta.build_model()

    def measure(size: int) -> dict[str, int]:
        stages = [phase_peaks(meta, replace(workload, parallel=replace(p, rank=stage * (p.gpus // p.pp))),
                              size * p.chunks, model)
                  for stage in range(p.pp)]
        return {phase: max(peaks[phase] for peaks in stages) for phase in stages[0]}

    return _fit(memory, workload, memory_source, "microbatch", fit_size(measure, memory, BATCHES, "microbatch"))


def fit_length(source: ModelSource, memory: int, name: str, workload: Workload = FORWARD, batch: int = 1,
               memory_source: str = "") -> Fit:
    """The largest value of the named input size ``name`` (a sequence length) whose peak fits ``memory`` at
    ``batch``; for a generation (``name`` PROMPT), the longest prompt its new tokens fit after."""
    meta = replace(source, device=Device.META)
    model = meta.build_model()
    generation = workload.generation

    def measure(length: int) -> dict[str, int]:
        if generation is not None:
            return phase_peaks(meta, replace(workload, step=replace(generation, prompt_len=length)), batch, model)
        return phase_peaks(replace(meta, inputs=meta.inputs.bind(name, length)), workload, batch, model)

    return _fit(memory, workload, memory_source, name.lower(), fit_size(measure, memory, LENGTHS, name))


#: The largest job the fewest-GPUs search tries.
MAX_GPUS = 4096


def fewest_gpus(source: ModelSource, workload: Workload, memory: int, batch: int = 1, memory_source: str = ""
                ) -> GpuFit:
    """The fewest GPUs of ``workload``'s sharded layout (FSDP or ZeRO-2, with its TP degree and pipeline stages) on
    which ``batch`` per GPU (with ``--pp``: a step's batch per data-parallel rank, in its microbatches) fits
    ``memory``: rank 0's peak (the largest shards: FSDP pads the last), or with stages the highest of each stage's
    first rank's, at the TP degree times the stages times 1, 2, 4 ... up to :data:`MAX_GPUS`, counted on meta from
    the smallest up, the first that fits."""
    p = workload.parallel
    if p.data is None or p.data == "ddp":
        raise UsageError("fit finds the fewest GPUs for a layout that shards the model (--fsdp or --zero 1|2); DDP "
                         "and TP alone hold the same on every job size beyond the TP degree: give --gpus N")
    meta = replace(source, device=Device.META)
    model = meta.build_model()
    group = p.tp * p.pp
    sizes = [group * 2**k for k in range(13) if group * 2**k <= MAX_GPUS]
    peaks: dict[int, int] = {}

    def peak(gpus: int) -> int:
        if gpus not in peaks:
            firsts = [stage * (gpus // p.pp) for stage in range(p.pp)]  # each stage's first rank
            peaks[gpus] = max(max(phase_peaks(meta, replace(workload, parallel=replace(p, gpus=gpus, rank=rank)),
                                              batch, model).values()) for rank in firsts)
        return peaks[gpus]

    largest = replace(p, gpus=sizes[-1])
    layout = largest.describe().replace(f"{p.data.value} {largest.dp}", p.data.value, 1)
    # upward, not a bisection: a GPU's share need not fall as the job grows (FSDP pads every tensor to a multiple
    # of the data-parallel size, which outgrows a small model's tensors)
    fewest = next((n for n in sizes if peak(n) <= memory), None)
    if fewest is None:
        least = min(peaks, key=lambda n: peaks[n])
        raise UsageError(f"batch {batch} a GPU fits on no job of {sizes[0]:,} to {sizes[-1]:,} GPUs ({layout}): "
                         f"the least a GPU needs is {peaks[least]:,} bytes, on {least:,}, more than the {memory:,} "
                         "given")
    return GpuFit(memory=memory, batch=batch, train=workload.training is not None, layout=layout,
                  peaks=tuple(GpuPoint(n, v) for n, v in sorted(peaks.items())), fewest=fewest,
                  memory_source=memory_source, stages=p.pp if p.pp > 1 else None)


def parse_memory(text: str) -> tuple[int, str]:
    """``--memory``: a size (``80GiB``, ``24GB``) or a known device (``H100``) -> (bytes, where it comes from)."""
    known = device_memory(text)
    if known is not None:
        return known, f"{text}'s memory"
    try:
        return units.parse_bytes(text), ""
    except ValueError:
        raise UsageError(f"--memory: '{text}' is neither a size (80GiB, 24GB) nor a known device "
                         "(H100, A100, A100-40GB, H200, L4, L40S, RTX4090, T4 ...)") from None


def run_fit(source: ModelSource, workload: Workload, memory: int, batch: int = 1, seq: int | None = None,
            memory_source: str = "", fewest: bool = False) -> FitReport:
    """What ``modelprof fit`` answers: the largest batch; with a named input size (SEQ), the longest one at
    ``batch`` (and the largest batch at ``seq`` when given); for a generation, the largest batch and the longest
    prompt at ``batch``; a sharded job's sizes are per GPU. With ``fewest`` (a sharded job of open size), the fewest
    GPUs on which ``batch`` per GPU fits instead."""
    if fewest:
        return FitReport(source.target, (), fewest_gpus(source, workload, memory, batch, memory_source))
    return FitReport(source.target, tuple(_fits(source, workload, memory, batch, seq, memory_source)))


def _fits(source: ModelSource, workload: Workload, memory: int, batch: int, seq: int | None, memory_source: str
          ) -> list[Fit]:
    names = sorted(source.inputs.names())
    if workload.parallel.pp > 1:
        if names or seq is not None:
            raise UsageError("fit --pp finds the largest microbatch at the input's size as given; give the size "
                             "(--input input_ids=512:int64) instead of a named one")
        return [fit_microbatch(source, memory, workload, memory_source)]
    if workload.generation is not None:
        return [fit_batch(source, memory, workload, memory_source),
                fit_length(source, memory, "PROMPT", workload, batch, memory_source)]
    if names:
        fits = [fit_length(source, memory, names[0], workload, batch, memory_source)]
        if seq is not None:
            bound = replace(source, inputs=source.inputs.bind(names[0], seq))
            fits.insert(0, fit_batch(bound, memory, workload, memory_source))
        return fits
    if seq is not None:
        raise UsageError("--seq gives a named input size a value; name one, e.g. --input input_ids=SEQ:int64")
    return [fit_batch(source, memory, workload, memory_source)]
