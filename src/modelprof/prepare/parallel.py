"""``--gpus N --fsdp | --zero 2 | --ddp``: the step as one rank of a data-parallel job, sharded by PyTorch itself.

The model is sharded with PyTorch's own engine, FSDP2's ``fully_shard`` (one unit per repeated block, then the
root) or the composable DDP ``replicate``, on a process group of the ``fake`` backend: ``gpus`` ranks simulated in
this one process, whose collectives complete at once and move no data. So the run is rank ``rank``'s step exactly as
PyTorch would run it in a real job: its shards, the all-gathered parameters in flight, the gradients reduced and
scattered; the counting session sees every op and every collective. Nothing about the model is changed that is not
put back: a model modelprof did not build itself is copied first (sharding rewrites a model in place).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from modelprof.errors import UsageError
from modelprof.prepare.base import Run, Transform

if TYPE_CHECKING:
    from modelprof.workload import Workload


class Shard(Transform):
    """One rank of a data-parallel job: FSDP2 (ZeRO-3), FSDP2 without resharding after the forward (ZeRO-2), or
    DDP, on a fake process group of ``gpus`` ranks."""

    option = "--fsdp/--zero/--ddp"

    def wanted(self, workload: Workload) -> bool:
        return workload.parallel.sharded

    def refusal(self, workload: Workload) -> str | None:
        p = workload.parallel
        if p.gpus < 1:
            return "--gpus: a job has at least one rank"
        if not 0 <= p.rank < p.gpus:
            return f"--rank {p.rank} is not a rank of a {p.gpus}-rank job (0 to {p.gpus - 1})"
        if p.gpus > 1 and not p.sharded:
            return "--gpus N runs one rank of a job; say how it shards: --fsdp, --zero 2 or --ddp"
        if p.sharded and workload.generation is not None:
            return "--fsdp/--zero/--ddp shard a forward or a training step, not a generation; drop --generate"
        if p.data is not None and p.data.value != "fsdp" and workload.training is None:
            return f"--{'ddp' if p.data.value == 'ddp' else 'zero 2'} shards a training step; add --train"
        return None

    @contextlib.contextmanager
    def apply(self, run: Run, workload: Workload) -> Iterator[Run]:
        if run.device == "meta":
            raise UsageError("sharding runs PyTorch's FSDP and DDP, which refuse meta tensors; use --device cpu "
                             "(a fake process group: no second process, no data moved)", option="device")
        import torch.distributed as dist

        p = workload.parallel
        started = not dist.is_initialized()
        if started:
            from torch.testing._internal.distributed.fake_pg import FakeStore

            dist.init_process_group("fake", store=FakeStore(), rank=p.rank, world_size=p.gpus)
        elif dist.get_world_size() != p.gpus or dist.get_rank() != p.rank:
            raise UsageError(f"a process group of {dist.get_world_size()} ranks is running here already; "
                             f"--gpus {p.gpus} --rank {p.rank} needs its own")
        try:
            model = run.model if run.owned else copy.deepcopy(run.model)
            shard(model, p.data.value)
            yield replace(run, model=model, parallel=p)
        finally:
            if started:
                dist.destroy_process_group()


def _all_reduce_now(state, bucket):  # noqa: ANN001, ANN202  (DDP refuses a hook whose annotations are strings)
    """DDP's default communication hook (divide by the world size, all-reduce the bucket, a ``dist.GradBucket``),
    waited for at once: a fake process group's work carries no result for DDP's asynchronous hook to hand back."""
    import torch
    import torch.distributed as dist

    tensor = bucket.buffer()
    tensor.div_(dist.get_world_size())
    dist.all_reduce(tensor)
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(tensor)
    return future


def shard(model, how: str) -> None:
    """Shard ``model`` in place: ``ddp`` replicates it; ``fsdp``/``zero2`` put each repeated block (the class with
    children that has the most instances, as ``--checkpoint auto`` finds it) in an FSDP2 unit of its own, then the
    root."""
    if how == "ddp":
        from torch.distributed._composable.replicate import replicate

        replicate(model)
        model.register_comm_hook(None, _all_reduce_now)
        # DDP's set-up (checking shapes across ranks, broadcasting rank 0's weights) runs at the first forward;
        # run it now, so the counted step has only what every step has
        replicate.state(model).lazy_init()
        return
    from torch.distributed.fsdp import fully_shard

    from modelprof.counting.formulas import register_fsdp_formulas
    from modelprof.prepare.checkpoint import AUTO, checkpointed_modules

    register_fsdp_formulas()
    reshard = how == "fsdp"
    try:
        blocks = checkpointed_modules(model, (AUTO,))
    except UsageError:  # no repeated block: the model is one unit
        blocks = []
    for block in blocks:
        fully_shard(block, reshard_after_forward=reshard)
    fully_shard(model, reshard_after_forward=reshard)
