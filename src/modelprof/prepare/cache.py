"""A training step keeps no KV cache: a transformers model whose config has ``use_cache`` on runs its training step
with it off, as training does (transformers turns it off itself under its gradient checkpointing; fine-tuning
recipes set ``model.config.use_cache = False``). With it on, the step would build a cache of every layer's keys and
values that the output holds through the optimizer's step, and, with ``--checkpoint``, each recomputed forward
would add its keys and values to it again. The config's value is put back on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from modelprof.prepare.base import Run, Transform, attributes_wrapped

if TYPE_CHECKING:
    from modelprof.workload import Workload


class NoKVCache(Transform):
    """``config.use_cache = False`` for a training step of a model that has the setting (implied by ``--train``)."""

    option = "--train"

    def wanted(self, workload: Workload) -> bool:
        return workload.training is not None

    @contextlib.contextmanager
    def apply(self, run: Run, workload: Workload) -> Iterator[Run]:
        config = getattr(run.model, "config", None)
        cached = getattr(config, "use_cache", False)
        if cached:
            config.use_cache = False
        try:
            with _unpacked_on_meta(run):  # (a model whose config keeps no cache already runs that test too)
                yield run
        finally:
            if cached:
                config.use_cache = True


def _unpacked_on_meta(run: Run) -> contextlib.AbstractContextManager:
    """On meta, transformers' test for packed sequences (several sequences in a row, told by position ids that start
    again at 0) runs its ops as on the CPU, and its one read of a value (``.all()`` of "every position follows the
    one before") answers yes, which meta and fake tensors cannot: the inputs modelprof makes are one sequence a row.
    (Without a cache transformers runs that test in a training step; on fake tensors, the stand-ins for meta ones
    under autocast and sharding, it would skip it as it does while tracing a graph.) Elsewhere, nothing changes."""
    import sys

    masking = sys.modules.get("transformers.masking_utils")
    if run.device != "meta" or not hasattr(masking, "find_packed_sequence_indices"):
        return contextlib.nullcontext()

    def answered(find: Any) -> Any:
        def find_on_meta(position_ids: Any) -> Any:
            import torch

            if torch.compiler.is_compiling():  # torch.export cutting a pipeline: transformers skips the test
                return find(position_ids)
            not_tracing = [(masking, "is_tracing", lambda _: lambda *args, **kwargs: False)]
            with attributes_wrapped(not_tracing), _scalars_answered():
                return find(position_ids)
        return find_on_meta

    return attributes_wrapped([(masking, "find_packed_sequence_indices", answered)])


def _scalars_answered() -> contextlib.AbstractContextManager:
    """A dispatch mode under which a meta or fake tensor's value read as a Python scalar (``.item()``, ``bool()``)
    is True; every other op goes on to the modes below it (the count) as it came."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.utils._python_dispatch import TorchDispatchMode

    class ScalarsAnswered(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default and (args[0].is_meta or
                                                                         isinstance(args[0], FakeTensor)):
                return True
            return func(*args, **(kwargs or {}))

    return ScalarsAnswered()
