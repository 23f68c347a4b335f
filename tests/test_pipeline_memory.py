"""A pipeline stage's peak against PyTorch's own memory trackers on a real gloo job: ``MemTracker`` (its module
hooks left out: it refuses a stage module called once per microbatch, and only the total is compared) on plain
stages, ``FSDPMemTracker`` on FSDP-sharded ones."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.test_parallel import MlpNet


def real_stage_peak(rank: int, world: int, schedule: str, chunks: int, rows: int, folder: str) -> None:
    """One rank of a real job: MlpNet cut into 2 stages at ``blocks.1`` (PyTorch's ``pipeline``), over ``world``
    gloo ranks (with 4, each stage FSDP2-sharded over its 2 data-parallel ranks), one step of ``schedule`` over
    ``chunks`` microbatches of ``rows`` rows and AdamW's step, under the tracker; its peak written to
    ``folder/rank{rank}.json``. As the count takes a step: the optimizer's state made beforehand (a loop holds it
    through every later step), the pipeline's own buffers made in the step; and each reduce-scatter through gloo's
    all-reduce in place, as NCCL's holds no copy of its input (gloo's own clones the whole input first, a backend's
    buffer the count of the job does not have)."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.pipelining import Schedule1F1B, ScheduleGPipe, SplitPoint, pipeline

    class Totals(MemTracker):  # every tensor, no module's share
        def _pre_fw_hook(self, *args: object) -> None: ...
        def _post_fw_hook(self, *args: object) -> None: ...
        def _pre_bw_hook(self, *args: object) -> None: ...
        def _post_bw_hook(self, *args: object) -> None: ...

    def reduce_scatter_in_place(output, input, op=None, group=None, async_op=False):  # noqa: ANN001, ANN202, A002
        dist.all_reduce(input, group=group)
        output.copy_(input.chunk(dist.get_world_size(group))[dist.get_rank(group)])

    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("pp", "dp"))
        index = mesh.get_local_rank("pp")
        pipe = pipeline(MlpNet(), mb_args=(torch.randn(rows, 16),),
                        split_spec={"blocks.1": SplitPoint.BEGINNING})
        stage = pipe.build_stage(index, torch.device("cpu"), mesh["pp"].get_group())
        if world > 2:
            fully_shard(stage.submod.get_submodule(f"blocks.{index}"), mesh=mesh["dp"])
            fully_shard(stage.submod, mesh=mesh["dp"])
            dist.reduce_scatter_single = reduce_scatter_in_place
        kind = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[schedule]
        steps = kind(stage, chunks, loss_fn=lambda output, target: output.sum())
        optimizer = torch.optim.AdamW(stage.submod.parameters(), lr=0.0, foreach=False)
        for param in stage.submod.parameters():
            param.grad = torch.zeros_like(param)
        optimizer.step()
        optimizer.zero_grad()
        tracker = FSDPMemTracker(stage.submod, optimizer) if world > 2 else Totals()
        if world == 2:
            tracker.track_external(stage.submod, optimizer)
        with tracker:
            if index == 0:
                batch = torch.randn(chunks * rows, 16)  # made in the step, and held through it as a loop holds it
                steps.step(batch)
            else:
                steps.step(target=torch.zeros(chunks), losses=[])
            optimizer.step()
        peak = next(iter(tracker.get_tracker_snapshot("peak").values()))["Total"]
        with open(os.path.join(folder, f"rank{rank}.json"), "w") as f:
            json.dump(peak, f)
    finally:
        dist.destroy_process_group()
    os._exit(0)  # (as test_parallel's real ranks: no destructors racing gloo's threads)


@pytest.mark.parametrize(("schedule", "chunks", "rows"), [("1f1b", 4, 64), ("gpipe", 2, 64), ("gpipe", 2, 4)])
def test_a_stage_peaks_as_memtracker_measures_a_real_job(run, tmp_path, schedule: str, chunks: int, rows: int
                                                         ) -> None:
    """--pp 2 on 2 ranks: each rank's counted peak equals the real job's, to the byte. With microbatches of 64
    rows (each (64, 16) float32 activation 4 KiB) the activations make the peak: 1F1B keeps a microbatch's forward
    send, and so its output, until the next send (a real backend's work holds its tensor). With 4 rows AdamW's step
    makes it, after the last stage's schedule has handed back the outputs joined, which a loop drops. (With FSDP,
    ``benchmarks/pipeline_memory.py``: the real job's own peak varies between runs by a unit's gathered weights,
    with the moment gloo's asynchronous collectives finish, so it is no test.)"""
    world = 2
    mp.start_processes(real_stage_peak, args=(world, schedule, chunks, rows, str(tmp_path)), nprocs=world,
                       join=True, start_method="spawn")
    for rank in range(world):
        code, out, err = run("stats", "tests.test_parallel:MlpNet", "--shape", "16", "--batch",
                             str(chunks * rows), "--train", "--pp", "2", "--gpus", str(world), "--microbatches",
                             str(chunks), "--schedule", schedule, "--rank", str(rank), "--format", "json")
        assert code == 0, err
        real = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert json.loads(out)["memory"]["peak"] == real, rank
