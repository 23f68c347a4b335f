"""``bench --layers`` and ``calibrate`` against independent references.

    python benchmarks/layer_time.py [--reps 5]

1. Rows against the whole forward: the sum of the per-layer medians over the median of plain forwards (no
   hooks) measured in the same run, for ResNet-50 (batch 8, 224x224) and a BERT-base encoder (batch 8, 128
   tokens). Goal: within 10 %.
2. Ranking against torch.profiler: the same modules wrapped in ``record_function`` ranges, each module's self time
   taken from the profiler's own event tree (its range's total less the ranges of the modules it called); top-10
   overlap with modelprof's ranking, over the same forwards (both timers around every module) and in a
   separate run (where run-to-run noise between near-tied layers also counts). Goal: at least 8 of 10.
3. ``calibrate`` against ``torch.utils.benchmark``: the same matmul and copy timed by
   ``Timer.blocked_autorange``. Goal: within 10 %.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import types
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402
import torch.utils.benchmark as benchmark  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from resnet import resnet50  # noqa: E402

from modelprof.loading.source import Inputs, InputSpec, ModelSource  # noqa: E402
from modelprof.reports.stats import ROOT as ROOT_ROW  # noqa: E402
from modelprof.timing.bench import BenchOptions, profile_layers  # noqa: E402
from modelprof.timing.calibrate import COPY_BYTES, MATMUL_SIZE, measure_peaks  # noqa: E402
from modelprof.timing.layertime import UNATTRIBUTED  # noqa: E402
from modelprof.timing.measure import TimingSettings, measure  # noqa: E402
from modelprof.timing.roofline import Peaks  # noqa: E402


def bert_base() -> nn.Module:
    import transformers

    return transformers.BertModel(transformers.BertConfig())  # bert-base: 12 layers, 768 wide, random weights


@contextlib.contextmanager
def profiled_modules(model: nn.Module) -> Iterator[dict[str, float]]:
    """Under torch.profiler, every module call a ``record_function`` range; yields each module's self time
    (seconds summed over the calls run inside), filled in on exit from the profiler's own event tree."""
    names = {id(m): (n or ROOT_ROW) for n, m in model.named_modules()}
    stack: list = []

    def pre(module, _args):
        ctx = torch.profiler.record_function("module::" + names[id(module)])
        ctx.__enter__()
        stack.append(ctx)

    def post(module, _args, _out):
        stack.pop().__exit__(None, None, None)

    totals: dict[str, float] = defaultdict(float)
    handles = [h for m in model.modules() for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            yield totals
    finally:
        for h in handles:
            h.remove()
    totals.update(_self_times(prof))


def profiler_self_times(model: nn.Module, args: tuple, kwargs: dict, reps: int) -> dict[str, float]:
    """Each module's self time (seconds per forward) from torch.profiler, in a run of its own."""
    with torch.inference_mode():
        model(*args, **kwargs)  # warm-up
        with profiled_modules(model) as totals:
            for _ in range(reps):
                model(*args, **kwargs)
    return {name: seconds / reps for name, seconds in totals.items()}


def _self_times(prof) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)

    def module_children(event):
        for child in event.cpu_children:
            if child.name.startswith("module::"):
                yield child
            else:
                yield from module_children(child)

    for event in prof.events():
        if event.name.startswith("module::"):
            own = event.cpu_time_total - sum(c.cpu_time_total for c in module_children(event))
            totals[event.name.removeprefix("module::")] += own / 1e6
    return totals


def overlap(ours: dict[str, float], theirs: dict[str, float], rows: set[str], top: int = 10) -> int:
    """How many of the ``top`` slowest rows the two rankings share."""
    def ranked(times: dict[str, float]) -> set[str]:
        return set(sorted((n for n in times if n in rows), key=times.get, reverse=True)[:top])

    return len(ranked(ours) & ranked(theirs))


def layer_rows(name: str, model: nn.Module, source: ModelSource, reps: int) -> None:
    settings = TimingSettings(warmup_calls=2, warmup_seconds=0, reps=reps)
    args, kwargs = source.build_inputs(8)
    plain = measure(model, args, kwargs, 8, "cpu", settings).latency.median
    profile = profile_layers(model, args, kwargs, source, settings,
                             BenchOptions(batch=8, layers=True, peak_flops=1e12, peak_bandwidth=1e11), plain)
    rows = [r for r in profile.rows if r.name != UNATTRIBUTED]
    names = {r.name for r in rows}
    ours = {r.name: r.median for r in rows}
    separate = overlap(ours, profiler_self_times(model, args, kwargs, reps), names)
    # the same forwards timed by both: modelprof's hooks and torch.profiler's ranges around every module
    with profiled_modules(model) as theirs:
        again = profile_layers(model, args, kwargs, source, settings,
                               BenchOptions(batch=8, layers=True, peak_flops=1e12, peak_bandwidth=1e11), plain)
    same = overlap({r.name: sum(r.samples) for r in again.rows}, theirs, names)
    ratio = profile.rows_total / plain
    slowest = sorted(rows, key=lambda r: r.median, reverse=True)[:3]
    print(f"| {name} | {plain * 1e3:,.1f} | {profile.rows_total * 1e3:,.1f} | {100 * (ratio - 1):+.1f} % | "
          f"{same}/10 | {separate}/10 | {', '.join(r.name for r in slowest)} |")


def calibration() -> None:
    peaks: Peaks = measure_peaks("cpu", "float32", seconds=2.0)
    n = MATMUL_SIZE["cpu"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    threads = torch.get_num_threads()  # Timer times one thread unless told
    mm = benchmark.Timer("torch.mm(a, b)", globals={"torch": torch, "a": a, "b": b},
                         num_threads=threads).blocked_autorange(min_run_time=2)
    src = torch.ones(COPY_BYTES["cpu"] // 4)
    dst = torch.empty_like(src)
    cp = benchmark.Timer("dst.copy_(src)", globals={"src": src, "dst": dst},
                         num_threads=threads).blocked_autorange(min_run_time=2)
    reference_flops, reference_bw = 2 * n**3 / mm.median, 2 * src.nbytes / cp.median
    print("| quantity | modelprof calibrate | torch.utils.benchmark | gap |")
    print("|---|---:|---:|---:|")
    print(f"| matmul {n}×{n} float32 [GFLOP/s] | {peaks.flops / 1e9:,.1f} | {reference_flops / 1e9:,.1f} | "
          f"{100 * (peaks.flops / reference_flops - 1):+.1f} % |")
    print(f"| copy {src.nbytes >> 20} MiB [GB/s] | {peaks.bandwidth / 1e9:,.1f} | {reference_bw / 1e9:,.1f} | "
          f"{100 * (peaks.bandwidth / reference_bw - 1):+.1f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    reps = parser.parse_args().reps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {reps} timed forwards per measurement\n")
    print("| model | forward median [ms] | rows sum [ms] | rows vs forward | top-10 overlap, same forwards "
          "| top-10 overlap, separate run | slowest rows |")
    print("|---|---:|---:|---:|---:|---:|---|")
    image = ModelSource("resnet50", Inputs(specs=(InputSpec((3, 224, 224)),)))
    layer_rows("ResNet-50, batch 8, 224×224", resnet50().eval(), image, reps)
    from modelprof.loading.source import DType

    text = ModelSource("bert", Inputs(specs=(InputSpec((128,), DType.INT64, high=30000),)))
    layer_rows("BERT-base encoder, batch 8, 128 tokens", bert_base().eval(), text, reps)
    print()
    calibration()


if __name__ == "__main__":
    main()
