"""How models run while modelprof measures them: the contexts shared by the counting and timing collectors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def training_flags_kept(model: nn.Module) -> Iterator[None]:
    """Every module's training flag restored afterwards, whatever happens (a model may mix train and eval)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def eval_inference(model: nn.Module) -> Iterator[None]:
    """Eval mode under ``torch.inference_mode()`` for the duration; every module's training flag is restored
    afterwards, whatever happens."""
    with training_flags_kept(model), torch.inference_mode():
        model.eval()
        yield


@contextlib.contextmanager
def fused_attention_off() -> Iterator[None]:
    """MultiheadAttention's fused fast path off for the duration, then restored.

    The fast path (``_transformer_encoder_layer_fwd``) runs a whole encoder layer as one opaque op; turning it off
    lets its linear layers and attention be counted one by one.
    """
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    fastpath = mha.get_fastpath_enabled()
    try:
        mha.set_fastpath_enabled(False)
        yield
    finally:
        mha.set_fastpath_enabled(fastpath)


@contextlib.contextmanager
def inference(model: nn.Module) -> Iterator[None]:
    """How modelprof runs a forward pass to count it: eval mode, inference mode, fused attention off."""
    with eval_inference(model), fused_attention_off():
        yield
