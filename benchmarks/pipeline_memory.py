"""One pipeline stage's counted peak against PyTorch's memory trackers on a real gloo job: MlpNet (two blocks of
Linear(16, 32), GELU, Linear(32, 16)) cut into 2 stages, on 2 ranks (``MemTracker``, its module hooks left out) and
on 4 (each stage FSDP2-sharded over 2 ranks, ``FSDPMemTracker``), GPipe and 1F1B, 2 and 4 microbatches of 64 rows,
AdamW; each real job run ``--repeat`` times, as its peak can vary between runs (the real rank is
``tests/test_pipeline_memory.py``'s).

    python benchmarks/pipeline_memory.py             # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modelprof import count_costs  # noqa: E402
from modelprof.workload import DataParallel, Parallel, Training, Workload  # noqa: E402
from tests.test_parallel import MlpNet  # noqa: E402
from tests.test_pipeline_memory import real_stage_peak  # noqa: E402

ROWS = 64


def real_peaks(world: int, schedule: str, chunks: int) -> list[int]:
    """Each rank's peak in one real job."""
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(real_stage_peak, args=(world, schedule, chunks, ROWS, folder), nprocs=world, join=True,
                           start_method="spawn")
        return [json.loads((Path(folder) / f"rank{rank}.json").read_text()) for rank in range(world)]


def counted_peak(world: int, schedule: str, chunks: int, rank: int) -> int:
    import torch

    data = DataParallel.FSDP if world > 2 else None
    parallel = Parallel(world, data, rank, pp=2, microbatches=chunks, schedule=schedule)
    report = count_costs(MlpNet(), (torch.randn(chunks * ROWS, 16),), workload=Workload(Training(), parallel=parallel))
    return report.memory.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| job | schedule | microbatches | rank | counted peak | real peaks (bytes) | equal |")
    print("|---|---|---:|---:|---:|---|---|")
    for world in (2, 4):
        for schedule in ("gpipe", "1f1b"):
            for chunks in (2, 4):
                runs = [real_peaks(world, schedule, chunks) for _ in range(args.repeat)]
                for rank in range(world):
                    ours = counted_peak(world, schedule, chunks, rank)
                    real = [r[rank] for r in runs]
                    job = "pp 2" if world == 2 else "fsdp 2 × pp 2"
                    equal = f"{sum(r == ours for r in real)} of {len(real)}"
                    print(f"| {job} | {schedule} | {chunks} | {rank} | {ours:,} | {', '.join(f'{r:,}' for r in real)} "
                          f"| {equal} |", flush=True)


if __name__ == "__main__":
    main()
