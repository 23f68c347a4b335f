"""`modelprof fit` (predicted on the meta device) against `modelprof bench --find-batch` (real runs in child
processes held to the same memory), for a forward and a training step, on a CNN and a transformer.

    python benchmarks/fit_vs_find_batch.py [--memory 1GiB]

Both go through the CLI exactly as a user would run them. The search runs two calls per probe (one warm-up, one
timed): a training step's second call runs with the optimizer state the first one made, as every step of a
training loop after the first does. Each search runs twice: with glibc's defaults, and with glibc told to return
freed memory at once (``MALLOC_MMAP_THRESHOLD_=131072``). The gap is fit's answer over the search's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    ("ResNet-18, 3×64×64", [str(ROOT / "examples/resnet.py") + ":resnet18", "--shape", "3,64,64"]),
    ("decoder (dim 256, 4 layers), 128 tokens",
     [str(ROOT / "examples/decoder.py") + ":Decoder", "--input", "128:int64:1000", "--kwargs",
      '{"dim": 256, "mlp_dim": 688, "layers": 4, "heads": 8, "kv_heads": 4}']),
)
SEARCH = ("--find-batch", "--reps", "1", "--warmup", "1", "--warmup-time", "0", "--batch-tolerance", "0.02",
          "--quiet", "--format", "json")


def modelprof(*argv: str, env: dict | None = None) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "modelprof", *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=True)
    return json.loads(done.stdout), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory", default="1GiB")
    memory = parser.parse_args().memory
    print(f"| model, {memory} | step | `fit` (time) | `find-batch`, glibc defaults (gap) "
          "| `find-batch`, mmap threshold 128 KiB (gap) |")
    print("|---|---|---:|---:|---:|")
    for label, target in CASES:
        for train in ((), ("--train",)):
            fitted, seconds = modelprof("fit", *target, "--memory", memory, *train, "--format", "json")
            predicted = fitted["fits"][0]["max_batch"]
            cells = []
            for env in ({}, {"MALLOC_MMAP_THRESHOLD_": "131072"}):
                found, _ = modelprof("bench", *target, *train, *SEARCH, "--memory-limit", memory, env=env)
                largest = found["max_batch"]
                cells.append(f"{largest:,} ({(predicted - largest) / largest:+.1%})")
            step = "training (AdamW)" if train else "forward"
            print(f"| {label} | {step} | {predicted:,} ({seconds:.1f} s) | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
