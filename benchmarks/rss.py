"""What a child process's resident memory really does: shared by the memory benchmarks.

A child runs the benchmark's own setup code, then :data:`SAMPLER`'s ``report_rise(work)``: it samples its resident
memory (``/proc/self/statm``) every millisecond while ``work()`` runs and prints the resident memory before and at
the peak as JSON. :func:`rise_in_child` runs such a child and returns the rise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SAMPLER = r"""
import json, os, threading, time

def report_rise(work):
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    peak, done = [0], [False]

    def sample():
        while not done[0]:
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    base = rss()
    thread = threading.Thread(target=sample)
    thread.start()
    work()
    done[0] = True
    thread.join()
    print(json.dumps({"base": base, "peak": max(peak[0], rss())}))
"""


def rise_in_child(script: str, args: list[str], fixed_mmap: bool = False) -> int:
    """Bytes the child's resident memory rose by while its ``report_rise(work)`` ran. ``fixed_mmap``: glibc's mmap
    threshold held at 128 KiB, so every freed tensor of that size or more goes back to the system at once (by
    default glibc raises the threshold after the first frees and keeps freed memory for reuse, which the resident
    memory then includes)."""
    env = {**os.environ, **({"MALLOC_MMAP_THRESHOLD_": "131072"} if fixed_mmap else {})}
    done = subprocess.run([sys.executable, "-c", SAMPLER + script, *args], capture_output=True, text=True,
                          check=True, env=env, cwd=Path(__file__).parent)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["peak"] - answer["base"]
