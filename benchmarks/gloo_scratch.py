"""What gloo itself allocates in one collective on CPU: the resident-memory rise of a 2-process gloo job around one
reduce-scatter, all-gather and all-reduce of a preallocated float32 tensor the size of one Linear(1024, 1024) unit
(4 MiB), glibc's mmap threshold held at 128 KiB, each after a warm-up call. The tensors exist before the call, so a
count of the tensors (modelprof's) has no rise; what the kernel sees is gloo's own scratch memory.

    python benchmarks/gloo_scratch.py
"""

from __future__ import annotations

import os
import re
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ELEMENTS = 1_049_600  # Linear(1024, 1024) with its bias: 4.0 MiB in float32


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\s+(\d+)", f.read()).group(1)) * 1024


def _rank(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    torch.set_num_threads(1)
    whole, half = torch.ones(ELEMENTS), torch.empty(ELEMENTS // 2)
    calls = {"reduce_scatter": lambda: dist.reduce_scatter_single(half, whole),  # as FSDP2 calls them
             "all_gather": lambda: dist.all_gather_single(whole, half),
             "all_reduce": lambda: dist.all_reduce(whole)}
    for name, call in calls.items():
        call()  # warm-up
        base = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM)
        call()
        if rank == 0:
            print(f"| {name} | {ELEMENTS * 4 / 2**20:.2f} MiB | {(_status('VmHWM') - base) / 2**20:.2f} MiB |")
    dist.destroy_process_group()


def main() -> None:
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"  # inherited by the spawned ranks
    print("| collective | tensor | resident rise |\n|---|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_rank, args=(folder,), nprocs=2, join=True, start_method="spawn")


if __name__ == "__main__":
    main()
