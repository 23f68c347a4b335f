"""Profiling overhead of `modelprof stats` against thop, ptflops, fvcore and FlopCounterMode.

Each tool's time to count a model is divided by the time of one plain eager forward of the same model
(eval mode, torch.inference_mode()). Runs are interleaved: every round times the plain forward and then each tool
once, and the ratio is taken within the round, so drift in machine load hits every tool alike. Reports the median
time and the median per-round ratio over --repeat rounds.

    python benchmarks/stats_overhead.py --repeat 7
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

# torchvision's compiled ops do not load against the CPU build of torch here; ptflops imports torchvision.ops
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from resnet import resnet50  # noqa: E402

import modelprof  # noqa: E402


def bert_base_encoder() -> nn.Module:
    """A BERT-base-sized encoder: 12 layers, hidden 768, 12 heads, MLP 3072."""
    layer = nn.TransformerEncoderLayer(768, 12, 3072, activation="gelu", batch_first=True)
    return nn.TransformerEncoder(layer, 12, enable_nested_tensor=False)


def seconds(fn: Callable[[nn.Module], object], model: nn.Module, fresh: bool) -> float:
    """Time of one fn(model); with ``fresh`` it gets a deep copy (made outside the timing), for tools that leave
    buffers behind in the model they profile."""
    target = copy.deepcopy(model) if fresh else model
    start = time.perf_counter()
    fn(target)
    return time.perf_counter() - start


def tools(x: torch.Tensor) -> dict[str, tuple[Callable[[nn.Module], object], bool]]:
    """name -> (count function of the model, whether it needs a fresh copy per run)."""
    out: dict[str, tuple[Callable, bool]] = {"modelprof": (lambda m: modelprof.profile(m, x).total.flops, False)}
    fresh = True

    try:
        import thop

        out["thop"] = (lambda m: thop.profile(m, inputs=(x,), verbose=False)[0], fresh)
    except ImportError:
        pass
    try:
        from ptflops import get_model_complexity_info

        def ptflops_run(m):
            def constructor(_):
                return {"src": x} if isinstance(m, nn.TransformerEncoder) else x

            return get_model_complexity_info(m, tuple(x.shape[1:]), input_constructor=constructor,
                                             as_strings=False, print_per_layer_stat=False, verbose=False)[0]

        out["ptflops"] = (ptflops_run, fresh)
    except ImportError:
        pass
    try:
        from fvcore.nn import FlopCountAnalysis

        def fvcore_run(m):
            analysis = FlopCountAnalysis(m, x)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return analysis.total()

        out["fvcore"] = (fvcore_run, False)
    except ImportError:
        pass
    from torch.utils.flop_counter import FlopCounterMode

    def flop_counter(m):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            m(x)
        return counter.get_total_flops() / 2  # it counts 2 per multiply-accumulate

    out["FlopCounterMode"] = (flop_counter, False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    cases = {
        "ResNet-50 1×3×224×224": (resnet50().eval(), torch.randn(1, 3, 224, 224)),
        "BERT-base encoder 1×128×768": (bert_base_encoder().eval(), torch.randn(1, 128, 768)),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeat} runs\n")
    print("| model | tool | time [ms] | × one forward | multiply-accumulates it reports |")
    print("|---|---|---:|---:|---:|")
    for label, (model, x) in cases.items():
        def forward(m, x=x):
            with torch.inference_mode():
                m(x)

        candidates = tools(x)
        forward(model)  # warm-up: the first call allocates and picks kernels
        counts = {"plain forward": ""}
        for name, (run, fresh) in candidates.items():  # warm-up each tool once, keeping what it counts
            counts[name] = f"{int(run(copy.deepcopy(model) if fresh else model)):,}"
        times: dict[str, list[float]] = {name: [] for name in ["plain forward", *candidates]}
        for _ in range(args.repeat):
            times["plain forward"].append(seconds(forward, model, False))
            for name, (run, fresh) in candidates.items():
                times[name].append(seconds(run, model, fresh))
        base = times["plain forward"]
        for name, samples in times.items():
            ratio = statistics.median(t / b for t, b in zip(samples, base, strict=True))
            print(f"| {label} | {name} | {statistics.median(samples) * 1e3:.1f} | {ratio:.2f} | {counts[name]} |")


if __name__ == "__main__":
    main()
