"""How models run while modelprof measures them: the contexts shared by the counting and timing collectors."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


@contextlib.contextmanager
def training_flags_kept(model: nn.Module) -> Iterator[None]:
    """Every module's training flag restored afterwards, whatever happens (a model may mix train and eval)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            if module.training != training:
                module.training = training


@contextlib.contextmanager
def eval_inference(model: nn.Module, sharded: bool = False) -> Iterator[None]:
    """Eval mode under ``torch.inference_mode()`` for the duration (``sharded``: ``torch.no_grad()``); every
    module's training flag is restored afterwards, whatever happens.

    NB: a sharded model runs under ``no_grad``: in inference mode DTensor is handed composite ops (``matmul``) whole
    and works out their layouts through their decompositions, raising and catching errors whose reference cycles
    hold the op's arguments (activations) until the cyclic collector runs, so the live memory would depend on when
    it does; under ``no_grad`` they are decomposed before DTensor sees them, as in training. The same aten ops
    run either way."""
    with training_flags_kept(model), torch.no_grad() if sharded else torch.inference_mode():
        if any(m.training for m in model.modules()):  # a model in eval mode already is left alone
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


class AttentionAsOnCPU(TorchFunctionMode):
    """``F.scaled_dot_product_attention`` on meta tensors runs the kernel the CPU would run.

    The dispatcher picks a fused attention kernel by device; the meta device has none of its own and falls back to
    the math: the scores and their softmax as whole (length x length) tensors, which autograd saves. CPU and CUDA
    run fused kernels that never hold them (they save the output and one logsumexp per row). So on meta this mode
    applies CPU's rule: 4-D inputs without dropout and without a mask that requires a gradient go to the CPU flash
    kernel (a boolean mask made additive first, as CPU does); anything else runs as before. Tensors on other
    devices pass through untouched.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return _attention_as_on_cpu(*args, **kwargs)
        return func(*args, **kwargs)


def _attention_as_on_cpu(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
                         scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    if (query.device.type != "meta" or query.dim() != 4 or dropout_p > 0
            or attn_mask is not None and attn_mask.requires_grad):  # (CPU's rule: the math, as the kernel has no
        # gradient for a mask; Doge's is learned)
        return F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                                              enable_gqa=enable_gqa)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        zero, minus_inf = (torch.scalar_tensor(v, dtype=query.dtype, device=query.device) for v in (0.0, -math.inf))
        attn_mask = torch.where(attn_mask, zero, minus_inf)
    output, _logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    return output


def attention_as_on_cpu(meta: bool) -> contextlib.AbstractContextManager:
    """:class:`AttentionAsOnCPU` for a run on the meta device; nothing elsewhere (a function mode sees every torch
    call, so it is entered only where it changes something)."""
    return AttentionAsOnCPU() if meta else contextlib.nullcontext()


@contextlib.contextmanager
def eval_with_grad(model: nn.Module) -> Iterator[None]:
    """Eval mode with autograd on, as a user runs ``with FlopCounterMode(): model(x)``: composite ops run as their
    parts, and kernels are chosen as for inputs that may need gradients."""
    with training_flags_kept(model), torch.enable_grad():
        if any(m.training for m in model.modules()):
            model.eval()
        yield


@contextlib.contextmanager
def inference(model: nn.Module, meta: bool = False, grad: bool = False, sharded: bool = False) -> Iterator[None]:
    """How modelprof runs a forward pass to count it: eval mode, inference mode (autograd on instead with
    ``grad``; ``no_grad`` for a ``sharded`` model), fused attention off, and on the meta device (``meta``)
    attention as on CPU."""
    with (eval_with_grad(model) if grad else eval_inference(model, sharded), fused_attention_off(),
          attention_as_on_cpu(meta)):
        yield
