"""Would counting on meta tensors be cheaper than counting the real forward? (A negative result, kept to be rerun.)

    python benchmarks/meta_shadow.py

For ResNet-50 (1x3x224x224) and the BERT-base encoder (1x128x768): the median of 10 interleaved rounds of one plain
eager forward on CPU (inference mode), ``modelprof.profile`` of a meta copy of the model (``.to("meta")``, a meta
input: no kernel runs) and ``modelprof.profile`` of the model on CPU, and the plain forward of the meta copy alone.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet import resnet50  # noqa: E402
from stats_overhead import bert_base_encoder  # noqa: E402

import modelprof  # noqa: E402


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def measure(name: str, model: torch.nn.Module, x: torch.Tensor) -> None:
    """Print the medians of the four runs of ``model(x)``, interleaved, after three warm-up rounds."""
    model.eval()
    meta, meta_x = copy.deepcopy(model).to("meta"), x.to("meta")
    runs = {"plain forward": lambda: model(x), "meta forward": lambda: meta(meta_x),
            "count on meta": lambda: modelprof.profile(meta, meta_x),
            "count on CPU": lambda: modelprof.profile(model, x)}
    times: dict[str, list[float]] = {label: [] for label in runs}
    for round_ in range(13):
        for label, fn in runs.items():
            start = time.perf_counter()
            with torch.inference_mode():
                fn()
            if round_ >= 3:
                times[label].append(time.perf_counter() - start)
    print(name, "  ".join(f"{label} {median_ms(t):.1f} ms" for label, t in times.items()))


def main() -> None:
    torch.set_num_threads(2)
    measure("ResNet-50", resnet50(), torch.randn(1, 3, 224, 224))
    measure("BERT-base encoder", bert_base_encoder(), torch.randn(1, 128, 768))


if __name__ == "__main__":
    main()
