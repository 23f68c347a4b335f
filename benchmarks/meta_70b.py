"""A 70-billion-parameter decoder on the meta device, in a child process: wall time and peak resident memory.

Plain: full per-layer stats of one forward. ``--sharded``: one training step (AdamW, ``--amp``, float32 master
weights, activation checkpointing) as rank 0 of 512 GPUs, FSDP 64 × TP 8, of Llama-2-70B from its config, with the
model states checked against 16 bytes per parameter the rank holds. The command line runs in a child process (so
the import of torch is included) and the child's peak resident memory is read from getrusage:

    python benchmarks/meta_70b.py --repeat 3
    python benchmarks/meta_70b.py --repeat 3 --sharded
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ["-m", "modelprof", "stats", str(ROOT / "examples" / "decoder.py") + ":llama_70b", "--device", "meta",
           "--input", "4096:int64:32000", "--format", "json"]
SHARDED = ["-m", "modelprof", "stats", str(ROOT / "examples" / "configs" / "llama-2-70b"), "--device", "meta",
           "--input", "input_ids=4096:int64:32000", "--train", "--amp", "--dtype", "float32", "--fsdp", "--tp", "8",
           "--gpus", "512", "--checkpoint", "auto", "--depth", "1", "--format", "json"]


def measure(command: list[str]) -> tuple[float, float, dict]:
    """Run ``python *command`` alone in a fresh child: (its wall seconds, its peak RSS in MiB, its JSON report)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        # each child is measured alone: RUSAGE_CHILDREN's maxrss is the largest child so far, so run each in a
        # fresh python that reports its own child's figure
        probe = (
            "import resource, subprocess, sys, time; t = time.perf_counter(); "
            f"subprocess.run([sys.executable, *{command!r}, '-o', {out.name!r}], check=True); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        seconds, max_kib = result.stdout.split()
        report = json.loads(Path(out.name).read_text())
    assert time.perf_counter() - started >= float(seconds)
    return float(seconds), int(max_kib) / 1024, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sharded", action="store_true", help="One rank's training step of a 512-GPU job.")
    args = parser.parse_args()
    if args.sharded:
        print("| run | wall [s] | peak RSS [MiB] | held, TP-sharded | held, whole | model states [B] | "
              "16 B × held + 4 B × tensors | peak [B] |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print("| run | wall [s] | peak RSS [MiB] | rows | params | flops |")
        print("|---:|---:|---:|---:|---:|---:|")
    for run in range(1, args.repeat + 1):
        seconds, rss, report = measure(SHARDED if args.sharded else COMMAND)
        total = report["total"]
        if not args.sharded:
            print(f"| {run} | {seconds:.2f} | {rss:.0f} | {len(report['layers'])} | {total['params']:,} | "
                  f"{total['flops']:,} |")
            continue
        p, m = report["parallel"], report["memory"]
        held = p["held_tp_sharded"] + p["held_whole"]
        states = m["parameters"] + m["gradients"] + m["optimizer"]
        tensors = 80 * 9 + 3  # per layer 7 linear weights and 2 norms; embeddings, final norm, head: AdamW's steps
        print(f"| {run} | {seconds:.2f} | {rss:.0f} | {p['held_tp_sharded']:,} | {p['held_whole']:,} | {states:,} | "
              f"{16 * held + 4 * tensors:,} | {m['peak']:,} |")


if __name__ == "__main__":
    main()
