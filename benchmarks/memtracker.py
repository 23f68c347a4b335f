"""The independent reference for a training step's peak: PyTorch's ``MemTracker`` on real steps, shared by the
memory benchmarks, the coverage sweep and the tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def sum_of_outputs(output: Any, *inputs: Any) -> torch.Tensor:
    """The loss of a training step: the sum of every float tensor of the output (modelprof's default loss)."""
    from modelprof.counting.tracker import tensors_in

    return sum(t.sum() for t in tensors_in(output) if t.is_floating_point())


def memtracker_peak(model: nn.Module, args: tuple, kwargs: dict | None = None, *, amp: bool = False,
                    prepare: Callable[[nn.Module], None] | None = None,
                    loss: Callable[..., torch.Tensor] = sum_of_outputs) -> int:
    """MemTracker's peak over two training steps of a copy of ``model`` on CPU, as in a training loop (the second
    holds the first's optimizer state): ``loss`` (the sum of every float output by default), AdamW with PyTorch's
    single-tensor implementation (as modelprof counts it), a transformers model without its KV cache (as training
    runs it, and modelprof counts it); with ``amp`` the forward and loss under CPU autocast;
    ``prepare`` changes the copy first (checkpointing, say)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    kwargs = kwargs or {}
    model = copy.deepcopy(model).train()
    if getattr(getattr(model, "config", None), "use_cache", False):  # training keeps no KV cache, as counted
        model.config.use_cache = False
    if prepare is not None:
        prepare(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0, foreach=False)
    tracker = MemTracker()
    tracker.track_external(model, optimizer, *[t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)])
    with tracker:
        for step in range(2):
            if step:
                tracker.reset_mod_stats()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                value = loss(model(*args, **kwargs), *args)
            value.backward()
            optimizer.step()
            optimizer.zero_grad()
    return sum(v["Total"] for v in tracker.get_tracker_snapshot("peak").values())
