"""The prepare stage: everything that turns the loaded model into the model that runs, in one place.

Each transform is one unit (:class:`~modelprof.prepare.base.Transform`): the option that asks for it, what it
cannot go with (checked once, when the :class:`~modelprof.workload.Workload` is built) and how it applies and undoes
itself. :func:`prepared` applies the ones a workload asks for in the order of :data:`TRANSFORMS`:

0. ``--train`` of a model with a KV cache (transformers' ``config.use_cache``): the step runs without one.
1. ``--dtype`` first: every later transform sees the tensors in the type they will run in.
2. ``--channels-last``: a memory format of the tensors as cast.
3. ``--checkpoint``: activation checkpointing wraps the chosen modules' forwards (torchtitan's order puts it after
   tensor parallelism and before compile and FSDP, when those land).
4. ``--gpus``/``--fsdp``/``--zero``/``--ddp``/``--tp``: the model sharded as one rank of a job, after checkpointing
   (torchtitan's order); on meta, FSDP and DTensor shard fake CPU tensors in place of the meta ones. With ``--amp``,
   FSDP's mixed-precision policy gathers the parameters in 16 bits (torchtitan's recipe), and autocast stands aside.
5. ``--amp`` last: autocast casts per op at run time, and on meta it swaps the final tensors for fake CPU ones.
 Adding a transform is a module here, its test, and one line below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from modelprof.prepare.amp import Autocast
from modelprof.prepare.base import Run, Transform, device_of
from modelprof.prepare.cache import NoKVCache
from modelprof.prepare.checkpoint import Checkpoint
from modelprof.prepare.dtype import Cast
from modelprof.prepare.memory_format import ChannelsLast
from modelprof.prepare.parallel import Shard

if TYPE_CHECKING:
    from modelprof.workload import Workload

#: Every transform, in the order it is applied.
TRANSFORMS: tuple[Transform, ...] = (NoKVCache(), Cast(), ChannelsLast(), Checkpoint(), Shard(), Autocast())


def refusal(workload: Workload) -> str | None:
    """The first reason a transform gives why ``workload`` cannot run, or None."""
    return next((m for t in TRANSFORMS if (m := t.refusal(workload))), None)


@contextlib.contextmanager
def prepared(model: Any, args: tuple, kwargs: dict | None, workload: Workload, owned: bool = False) -> Iterator[Run]:
    """The run of ``model(*args, **kwargs)`` as ``workload`` asks: every wanted transform applied, in order, and
    undone on exit (``owned``: modelprof built the model, so what a transform replaced is not kept to be put
    back)."""
    run = Run(model, tuple(args), dict(kwargs or {}), device_of(model, args, kwargs or {}).type, owned)
    with contextlib.ExitStack() as stack:
        for transform in TRANSFORMS:
            if transform.wanted(workload):
                run = stack.enter_context(transform.apply(run, workload))
        yield run


__all__ = ["TRANSFORMS", "Run", "Transform", "prepared", "refusal"]
