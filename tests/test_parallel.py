"""One rank of a data-parallel job (``--gpus N --fsdp | --zero 2 | --ddp``): sharded by PyTorch's FSDP2 and DDP on a
fake process group, checked against the ZeRO paper's volumes by hand and against a real 2-rank gloo run under
PyTorch's ``CommDebugMode``."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from modelprof import count_costs
from modelprof.errors import UsageError
from modelprof.workload import Parallel, Training, Workload


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class Net(nn.Module):
    """Three blocks of Linear(16, 16): 272 parameters each (256 + 16), 1,088 bytes in float32; 3,264 in all."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(Block(), Block(), Block())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


BLOCK_BYTES = 272 * 4
X = torch.randn(8, 16)


def step(data: str, gpus: int = 4):
    return count_costs(Net(), (X,), workload=Workload(Training(), parallel=Parallel(gpus, data)))


def comm(report) -> dict[tuple[str, str], tuple[int, int]]:
    """(kind, phase) -> (calls, bytes)."""
    found: dict[tuple[str, str], list[int]] = {}
    for call in report.comm or ():
        entry = found.setdefault((call.kind, call.phase), [0, 0])
        entry[0] += call.count
        entry[1] += call.bytes
    return {k: tuple(v) for k, v in found.items()}


def test_fsdp_volumes_are_the_zero_papers() -> None:
    """ZeRO-3: each block's parameters are all-gathered in the forward and again in the backward, and its gradients
    reduce-scattered: 3 blocks, 1,088 bytes each, every time."""
    report = step("fsdp")
    assert comm(report) == {("all_gather", "forward"): (3, 3 * BLOCK_BYTES),
                            ("all_gather", "backward"): (3, 3 * BLOCK_BYTES),
                            ("reduce_scatter", "backward"): (3, 3 * BLOCK_BYTES)}
    m = report.memory
    # rank 0 holds a quarter of every parameter, gradient and Adam moment: 3,264 / 4 = 816 bytes; plus AdamW's six
    # float32 step counters (one per parameter tensor), which are not sharded
    assert (m.parameters, m.gradients, m.optimizer) == (816, 816, 2 * 816 + 6 * 4)
    assert report.parallel.gpus == 4 and report.parallel.data == "fsdp" and report.total.type == "Net"


def test_zero2_gathers_once_and_ddp_all_reduces_once() -> None:
    zero2 = step("zero2")
    assert comm(zero2) == {("all_gather", "forward"): (3, 3 * BLOCK_BYTES),
                           ("reduce_scatter", "backward"): (3, 3 * BLOCK_BYTES)}
    ddp = step("ddp")
    # DDP: every gradient in one bucket (they fit DDP's 25 MiB), all-reduced once after the backward
    assert comm(ddp) == {("all_reduce", "backward"): (1, 3 * BLOCK_BYTES)}
    assert (ddp.memory.parameters, ddp.memory.gradients) == (3 * BLOCK_BYTES, 3 * BLOCK_BYTES)


def test_a_rank_computes_its_whole_batch() -> None:
    """Data parallelism splits the data, not the work on it: a rank's forward and backward Flops are the
    single-device step's at the same batch; its optimizer updates its shard only."""
    single = count_costs(Net(), (X,), workload=Workload(Training()))
    fsdp = step("fsdp")
    assert (fsdp.total.flops, fsdp.total.bwd_flops) == (single.total.flops, single.total.bwd_flops)
    # AdamW's per-element work on a quarter of the elements (its scalar step-counter updates are not sharded)
    assert fsdp.total.opt_flops < single.total.opt_flops / 3


def test_user_model_is_left_alone() -> None:
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_costs(model, (X,), workload=Workload(Training(), parallel=Parallel(2, "fsdp")))
    assert type(model) is Net and all(type(p) is nn.Parameter for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not dist.is_initialized()


def test_refusals() -> None:
    with pytest.raises(UsageError, match="say how it shards"):
        Workload(Training(), parallel=Parallel(4))
    with pytest.raises(UsageError, match="not a rank"):
        Workload(Training(), parallel=Parallel(4, "fsdp", rank=4))
    with pytest.raises(UsageError, match="add --train"):
        Workload(parallel=Parallel(4, "ddp"))
    with pytest.raises(UsageError, match="meta"):
        count_costs(Net().to("meta"), (X.to("meta"),), workload=Workload(Training(), parallel=Parallel(2, "fsdp")))


def test_cli(run, tmp_path) -> None:
    base = ["stats", "tests.test_parallel:Net", "--shape", "16", "--batch", "8", "--train"]
    code, out, err = run(*base, "--gpus", "4", "--fsdp", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["parallel"] == {"gpus": 4, "data": "fsdp", "rank": 0}
    assert sum(c["bytes"] for c in data["comm"] if c["kind"] == "all_gather") == 6 * BLOCK_BYTES
    code, out, err = run(*base, "--gpus", "4", "--fsdp")
    assert code == 0 and "Rank 0 of 4 (fsdp)" in out and "reduce_scatter" in out, err
    for extra, message in ((["--gpus", "4"], "say how it shards"), (["--fsdp", "--zero", "2"], "choose one"),
                           (["--gpus", "2", "--fsdp", "--rank", "2"], "not a rank")):
        code, out, err = run(*base, *extra)
        assert code == 2 and message in err and out == "", err
    for command in (["bench", "tests.test_parallel:Net", "--shape", "16", "--gpus", "2", "--fsdp"],
                    ["fit", "tests.test_parallel:Net", "--shape", "16", "--train", "--memory", "1GB", "--gpus", "2",
                     "--fsdp"]):
        code, out, err = run(*command)
        assert code == 2 and "not built yet" in err, err


# ---------------------------------------------------------------------------------------------------------------
# The reference: a real 2-rank gloo job, sharded as a user shards it, under CommDebugMode
# ---------------------------------------------------------------------------------------------------------------


def _real_rank(rank: int, world: int, layout: str, folder: str) -> None:
    from torch.distributed.tensor.debug import CommDebugMode

    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = Net()
        if layout == "ddp":
            model = nn.parallel.DistributedDataParallel(model)
        else:
            from torch.distributed.fsdp import fully_shard

            for block in model.blocks:
                fully_shard(block)
            fully_shard(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
        with CommDebugMode() as mode:
            model(torch.randn(8, 16)).sum().backward()
            optimizer.step()
        counts = {str(op): n for op, n in mode.get_comm_counts().items()}
        with open(os.path.join(folder, f"rank{rank}.json"), "w") as f:
            json.dump(counts, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("layout", ["fsdp", "ddp"])
def test_collectives_equal_commdebugmode_on_a_real_gloo_run(layout: str, tmp_path) -> None:
    mp.start_processes(_real_rank, args=(2, layout, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    real = json.loads((tmp_path / "rank0.json").read_text())
    ours = comm(step(layout, gpus=2))
    counted = {kind: sum(n for (k, _), (n, _b) in ours.items() if k == kind) for kind, _ in ours}
    names = {"all_gather": "c10d._allgather_base_", "reduce_scatter": "c10d._reduce_scatter_base_",
             "all_reduce": "c10d.allreduce_"}
    assert {names[k]: n for k, n in counted.items()} == real
