"""Fidelity and cost of `modelprof bench` on CPU.

1. Median latency of modelprof's timing loop against torch.utils.benchmark.Timer.blocked_autorange on the same
   model and batch, in the same run (interleaved rounds). Target: within 5 %.
2. Timing overhead per call: modelprof's loop around a model doing nothing measurable (an identity), as a share
   of a 1 ms model. Target: below 1 %.
3. Search cost: forward passes needed to find the largest batch under a limit, for modelprof's search (to 1 %),
   a plain doubling search (within 2x) and the reference's +100 loop (within 100). Target: at most
   2*log2(limit) + 3.

    python benchmarks/bench_fidelity.py
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.benchmark import Timer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from resnet import resnet18  # noqa: E402

from modelprof.reports.bench import BatchResult, LatencyStats  # noqa: E402
from modelprof.timing.measure import TimingSettings, find_max_batch, measure  # noqa: E402


def fidelity(rounds: int = 5) -> None:
    print("## Median latency against torch.utils.benchmark (CPU)\n")
    print("| model | batch | modelprof median [ms] | Timer.blocked_autorange median [ms] | difference |")
    print("|---|---:|---:|---:|---:|")
    torch.manual_seed(0)
    cases = [
        ("ResNet-18 3×224×224", resnet18().eval(), torch.randn(1, 3, 224, 224)),
        ("ResNet-18 3×112×112", resnet18().eval(), torch.randn(4, 3, 112, 112)),
        ("MLP 1024-4096-1024", nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024)).eval(),
         torch.randn(32, 1024)),
    ]
    settings = TimingSettings(duration=1.0)
    for label, model, x in cases:
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(measure(model, (x,), {}, x.shape[0], "cpu", settings).latency.median)
            timer = Timer("model(x)", globals={"model": model, "x": x},
                          setup="torch.set_grad_enabled(False)", num_threads=torch.get_num_threads())
            with torch.inference_mode():
                theirs.append(timer.blocked_autorange(min_run_time=1.0).median)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"| {label} | {x.shape[0]} | {a * 1e3:.3f} | {b * 1e3:.3f} | {100 * (a - b) / b:+.1f} % |")


def overhead() -> None:
    print("\n## Timing overhead per call\n")
    identity = nn.Identity()
    x = torch.randn(1)
    result = measure(identity, (x,), {}, 1, "cpu", TimingSettings(reps=20000, warmup_calls=1000))
    per_call = result.latency.median
    print(f"median time of one timed call of nn.Identity (loop, clock, module call): {per_call * 1e6:.2f} µs "
          f"= {100 * per_call / 1e-3:.2f} % of a 1 ms model\n")


def search_cost() -> None:
    print("## Forward passes to find the largest batch (answer found in brackets)\n")
    print("| largest batch that fits | modelprof | plain doubling | reference +100 loop | 2·log2(limit)+3 |")
    print("|---:|---:|---:|---:|---:|")
    dummy = BatchResult(1, LatencyStats.from_samples([1.0]), 1.0, 0)
    for limit in (7, 100, 1000, 1537, 20_000, 160_000):
        ours = find_max_batch(lambda b, limit=limit: dummy if b <= limit else None)
        doubling_passes, b = 1, 1  # double until the first failure; answer: the last power of two that ran
        while b * 2 <= limit:
            b *= 2
            doubling_passes += 1
        doubling_passes += 1
        reference_answer = 1 + 100 * ((limit - 1) // 100)  # 1, 101, 201, ... until one fails
        reference_passes = (limit - 1) // 100 + 2
        print(f"| {limit:,} | {ours.probes} ({ours.max_batch:,}) | {doubling_passes} ({b:,}) | "
              f"{reference_passes:,} ({reference_answer:,}) | {2 * math.log2(limit) + 3:.0f} |")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    fidelity()
    overhead()
    search_cost()
