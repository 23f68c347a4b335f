"""Full per-layer stats of a 70-billion-parameter decoder on the meta device: wall time and peak memory.

Runs the real command line in a child process (so the import of torch is included) and reads the child's
peak resident memory from getrusage:

    python benchmarks/meta_70b.py --repeat 3
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| run | wall [s] | peak RSS [MiB] | rows | params | flops |")
    print("|---:|---:|---:|---:|---:|---:|")
    for run in range(1, args.repeat + 1):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            # each child is measured alone: RUSAGE_CHILDREN's maxrss is the largest child so far, so run each
            # in a fresh python that reports its own child's figure
            probe = (
                "import resource, subprocess, sys, time; t = time.perf_counter(); "
                f"subprocess.run([sys.executable, *{COMMAND!r}, '-o', {out.name!r}], check=True); "
                "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            )
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
            seconds, max_kib = result.stdout.split()
            report = json.loads(Path(out.name).read_text())
        assert time.perf_counter() - started >= float(seconds)
        total = report["total"]
        print(f"| {run} | {float(seconds):.2f} | {int(max_kib) / 1024:.0f} | {len(report['layers'])} | "
              f"{total['params']:,} | {total['flops']:,} |")


if __name__ == "__main__":
    main()
