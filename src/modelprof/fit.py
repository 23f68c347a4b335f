"""``modelprof fit``: the largest batch whose peak memory fits a given memory, predicted without running out of
it.

The model is built on the meta device (no storage) and counted at a few batch sizes: each run's peak of live tensor
memory (:mod:`modelprof.memory`) is exact for that batch, phase by phase. The memory model is one line per phase,
``peak(b) = fixed + per_sample · b``; the answer is counted once more, and bisected down if it does not fit.
"""

from __future__ import annotations

from dataclasses import replace

from .counting import count_costs
from .errors import UsageError
from .options import Device, ModelSource
from .report import FitReport
from .train import Optimizer, count_train_step

#: Memory of common accelerators, in bytes (the device's memory; the runtime itself takes some of it).
DEVICE_MEMORY = {
    "A100-40GB": 40 * 2**30, "A100": 80 * 2**30, "A100-80GB": 80 * 2**30, "H100": 80 * 2**30,
    "H100-94GB": 94 * 2**30, "H200": 141 * 10**9, "B200": 192 * 10**9, "L4": 24 * 2**30, "L40S": 48 * 2**30,
    "A10": 24 * 2**30, "RTX4090": 24 * 2**30, "RTX3090": 24 * 2**30, "V100": 32 * 2**30, "T4": 16 * 2**30,
}

#: The batch sizes the memory model is drawn through (the first two) and checked at (the third).
BATCHES = (2, 4, 8)


def device_memory(name: str) -> int | None:
    """The memory of a known device, by name (case and dashes ignored), or None."""
    key = name.upper().replace("_", "").replace(" ", "")
    table = {k.upper().replace("-", "").replace("_", ""): v for k, v in DEVICE_MEMORY.items()}
    return table.get(key.replace("-", ""))


def phase_peaks(source: ModelSource, batch: int, train: bool, optimizer: Optimizer) -> dict[str, int]:
    """The exact peak of live tensor memory in each phase (forward; backward and optimizer with ``train``) of one
    run at ``batch``, on the meta device."""
    model = source.build_model()
    args, kwargs = source.build_inputs(batch)
    report = count_train_step(model, args, kwargs, optimizer=optimizer) if train else count_costs(model, args, kwargs)
    return report.memory.phase_peaks


def fit_batch(source: ModelSource, memory: int, train: bool = False, optimizer: Optimizer = Optimizer.ADAMW,
              memory_source: str = "") -> FitReport:
    """The largest batch whose peak fits ``memory`` bytes.

    Each phase's peak is a line in the batch (its activations grow with it, its weights, gradients and optimizer
    state do not), and the run's peak is the highest of them: lines drawn through batch 2 and 4 give, for each
    phase, the largest batch that keeps it under ``memory``, and the smallest of those is the answer. It is counted
    once more; if its exact peak does not fit (a model whose memory is not linear in the batch), a bisection
    between the last batch known to fit and it finds the largest that does.
    """
    meta = replace(source, device=Device.META)
    runs = {b: phase_peaks(meta, b, train, optimizer) for b in BATCHES}
    low, high = BATCHES[0], BATCHES[1]
    if max(runs[low].values()) > memory:
        raise UsageError(f"even batch {low} needs {max(runs[low].values()):,} bytes, more than the {memory:,} given")
    lines = {phase: (runs[low][phase] - (runs[high][phase] - runs[low][phase]) // (high - low) * low,
                     (runs[high][phase] - runs[low][phase]) // (high - low)) for phase in runs[low]}
    limits = [(memory - fixed) // slope for fixed, slope in lines.values() if slope > 0]
    if not limits:
        raise UsageError("the peak does not grow with the batch, so no batch is the largest; check the inputs")
    best = max(min(limits), low)
    peak = max(phase_peaks(meta, best, train, optimizer).values())
    if peak > memory:
        best, peak = _bisect(meta, train, optimizer, memory, low, best)
    fixed, slope = max(lines.values(), key=lambda line: line[0] + line[1] * best)
    peaks = tuple((b, max(runs[b].values())) for b in BATCHES)
    return FitReport(model=source.target, memory=memory, train=train, peaks=peaks, fixed=fixed, per_sample=slope,
                     max_batch=best, peak_at_max=peak, memory_source=memory_source,
                     lines=tuple((phase, f, k) for phase, (f, k) in lines.items()))


def _bisect(meta: ModelSource, train: bool, optimizer: Optimizer, memory: int, fits: int, fails: int
            ) -> tuple[int, int]:
    """The largest batch in (fits, fails) whose peak fits, and that peak."""
    peak = max(phase_peaks(meta, fits, train, optimizer).values())
    while fails - fits > 1:
        middle = (fits + fails) // 2
        middle_peak = max(phase_peaks(meta, middle, train, optimizer).values())
        if middle_peak <= memory:
            fits, peak = middle, middle_peak
        else:
            fails = middle
    return fits, peak
