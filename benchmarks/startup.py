"""Start-up time of the command line, as ratios to ``python -c "import torch"``.

    python benchmarks/startup.py [--runs 7]

Each command runs ``--runs`` times, interleaved with the others so a busy machine slows them alike; the median
wall time is reported. Goals (issue "Every real model counts"): ``--help`` and ``--version`` under 0.3 s (they
import no torch), and ``stats`` on a three-layer model within 1.2x of importing torch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKED = str(ROOT / "examples" / "worked.py") + ":Net"

COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "modelprof --help": [sys.executable, "-m", "modelprof", "--help"],
    "modelprof --version": [sys.executable, "-m", "modelprof", "--version"],
    "modelprof stats (worked example, 3x8x8)": [sys.executable, "-m", "modelprof", "stats", WORKED,
                                                "--shape", "3,8,8"],
    "modelprof stats --format json": [sys.executable, "-m", "modelprof", "stats", WORKED, "--shape", "3,8,8",
                                      "--format", "json"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            started = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["python -c 'import torch'"])
    print(f"{runs} runs each, interleaved; median wall time\n")
    print("| command | median [s] | ratio to import torch |")
    print("|---|---:|---:|")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"| {name} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
