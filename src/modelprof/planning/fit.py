"""``modelprof fit``: the largest batch whose peak memory fits a given memory, predicted without running out of
it.

The model is built on the meta device (no storage) and counted at a few batch sizes: each run's peak of live tensor
memory (:mod:`modelprof.counting.memory`) is exact for that batch, phase by phase. The memory model is one line
per phase, ``peak(b) = fixed + per_sample · b``; the answer is counted once more, and bisected down if it does not fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn

from modelprof.counting.forward import count_costs
from modelprof.counting.generate import count_generation, make_prompt
from modelprof.counting.train import Optimizer, count_train_step
from modelprof.errors import UsageError
from modelprof.loading.source import Device, ModelSource
from modelprof.reports.kinds import FitReport

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


def phase_peaks(source: ModelSource, batch: int, train: bool, optimizer: Optimizer,
                model: nn.Module | None = None, amp: bool = False) -> dict[str, int]:
    """The exact peak of live tensor memory in each phase (forward; backward and optimizer with ``train``) of one
    run at ``batch``, on the meta device (under autocast with ``amp``); ``model`` is ``source``'s, built already
    (counting leaves it as it was)."""
    model = source.build_model() if model is None else model
    args, kwargs = source.build_inputs(batch)
    if train:
        report = count_train_step(model, args, kwargs, optimizer=optimizer, amp=amp)
    else:
        report = count_costs(model, args, kwargs, amp=amp)
    return report.memory.phase_peaks


def generation_peaks(source: ModelSource, batch: int, prompt_len: int, new_tokens: int,
                     model: nn.Module | None = None) -> dict[str, int]:
    """The exact peak of live tensor memory of a prefill and its decode steps (the KV cache included), on meta."""
    model = source.build_model() if model is None else model
    report = count_generation(model, make_prompt(model, batch, prompt_len, source.device.value), new_tokens)
    return report.memory.phase_peaks


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
    if max(runs[low].values()) > memory:
        raise UsageError(f"even {what} {low} needs {max(runs[low].values()):,} bytes, more than the {memory:,} given")
    lines = {phase: (runs[low][phase] - (runs[high][phase] - runs[low][phase]) // (high - low) * low,
                     (runs[high][phase] - runs[low][phase]) // (high - low)) for phase in runs[low]}
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


def _report(source: ModelSource, memory: int, train: bool, memory_source: str, what: str, result: tuple,
            amp: bool = False) -> FitReport:
    best, peak, lines, peaks = result
    fixed, slope = max(lines.values(), key=lambda line: line[0] + line[1] * best)
    return FitReport(model=source.target, memory=memory, train=train, peaks=tuple(sorted(peaks.items())),
                     fixed=fixed, per_sample=slope, max_batch=best, peak_at_max=peak, memory_source=memory_source,
                     lines=tuple((phase, f, k) for phase, (f, k) in lines.items()), dim=what, amp=amp)


def fit_batch(source: ModelSource, memory: int, train: bool = False, optimizer: Optimizer = Optimizer.ADAMW,
              memory_source: str = "", generation: tuple[int, int] | None = None, amp: bool = False) -> FitReport:
    """The largest batch whose peak fits ``memory`` bytes (of a forward, a training step, or with ``generation``
    = (prompt_len, new_tokens) a prefill and its decode steps), from shape-only runs; see :func:`fit_size`."""
    meta = replace(source, device=Device.META)
    model = meta.build_model()
    if generation is not None:
        def measure(b: int) -> dict[str, int]:
            return generation_peaks(meta, b, *generation, model=model)
    else:
        def measure(b: int) -> dict[str, int]:
            return phase_peaks(meta, b, train, optimizer, model, amp)
    return _report(source, memory, train, memory_source, "batch", fit_size(measure, memory, BATCHES), amp)


def fit_length(source: ModelSource, memory: int, name: str, batch: int = 1, train: bool = False,
               optimizer: Optimizer = Optimizer.ADAMW, memory_source: str = "",
               new_tokens: int | None = None, amp: bool = False) -> FitReport:
    """The largest value of the named input size ``name`` (a sequence length) whose peak fits ``memory`` at
    ``batch``; with ``new_tokens``, the longest prompt a generation of that many tokens fits."""
    meta = replace(source, device=Device.META)
    model = meta.build_model()
    if new_tokens is not None:
        def measure(length: int) -> dict[str, int]:
            return generation_peaks(meta, batch, length, new_tokens, model)
    else:
        def measure(length: int) -> dict[str, int]:
            bound = replace(meta, inputs=meta.inputs.bind(name, length))
            return phase_peaks(bound, batch, train, optimizer, model, amp)
    return _report(source, memory, train, memory_source, name.lower(), fit_size(measure, memory, LENGTHS, name),
                   amp)
