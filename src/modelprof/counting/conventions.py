"""Every peer's convention, as data: which ops, modules and functions each tool counts, and how much each costs.

A :class:`Convention` is three small tables, each read the way its tool reads a model:

* ``ops``: aten op name -> ``rule(args, kwargs, out)`` over :class:`~modelprof.counting.formulas.TensorSpec`
  (shapes), for the tools that see the op stream (PyTorch's ``FlopCounterMode``; fvcore, whose JIT trace holds the
  ops a forward under inference mode dispatches: ``aten::linear``, ``aten::batch_norm``, ...).
* ``modules``: module class path -> ``rule(module, inputs, output)``, for the tools that hook modules of known
  classes (thop, ptflops). A class matches exactly, as ``type(m) in table`` does in their code, and a counted
  module hides its descendants' module rules, as their per-module sums do.
* ``functions``: function path -> ``rule(*args, **kwargs)``, for the tools that patch ``torch.nn.functional`` and
  tensor methods (ptflops, calflops): the function is replaced by a counting wrapper for the count, as they do.

Each count is charged to the module running at the time, or to a row of its own (``functions_apart``: ptflops
adds its functions' count to the total only). Every number is in the tool's own unit (``unit``). Each rule names
the peer's file and function it reproduces, and ``docs/conventions.md`` tabulates them. Adding a convention adds an
entry to :data:`CONVENTIONS`; nothing else changes.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelprof.counting.formulas import TensorSpec, arg, specs_in

OpRule = Callable[[tuple, dict, Any], int]
ModuleRule = Callable[[Any, tuple, Any], int]
FunctionRule = Callable[..., int]


@dataclass(frozen=True)
class Convention:
    """One tool's way of counting; see the module's docstring for the three tables."""

    name: str
    tool: str  #: the tool and the version its rules were read from
    unit: str  #: "MACs" or "FLOPs"
    summary: str  #: one line for the report's header
    ops: Mapping[str, OpRule] = field(default_factory=dict)
    modules: Mapping[str, ModuleRule] = field(default_factory=dict)
    functions: Mapping[str, FunctionRule] = field(default_factory=dict)
    as_autograd: bool = False  #: the forward runs with autograd on, as FlopCounterMode's users run it
    functions_apart: bool = False  #: function counts go to a row of their own, not to the running module
    per_sample: bool = False  #: module counts are divided by the batch (ptflops' average per input)
    #: a module held by several parents gets one hook per parent (thop's ``model.apply(add_hooks)``), so each of its
    #: calls counts once per parent, and the sum over the tree counts that once per parent again
    hook_per_path: bool = False

    @property
    def header(self) -> str:
        return f"{self.unit} as {self.tool} counts them: {self.summary}"


def numel(shape: Any) -> int:
    return math.prod(shape)


# --------------------------------------------------------------------------------------------------------------
# PyTorch's FlopCounterMode: its own registry, on the ops autograd dispatches
# --------------------------------------------------------------------------------------------------------------


def _shapes(value: Any) -> Any:
    if isinstance(value, TensorSpec):
        return value.shape
    if isinstance(value, list | tuple):
        return type(value)(_shapes(v) for v in value) if not hasattr(value, "_fields") else tuple(map(_shapes, value))
    if isinstance(value, dict):
        return {k: _shapes(v) for k, v in value.items()}
    return value


def _torch_rule(formula: Callable[..., int]) -> OpRule:
    """A formula of ``torch.utils.flop_counter.flop_registry`` (its shape-level function) as an op rule."""
    inner = getattr(formula, "__wrapped__", formula)

    def rule(args: tuple, kwargs: dict, out: Any) -> int:
        return int(inner(*_shapes(args), out_shape=_shapes(out), **_shapes(kwargs)))

    return rule


@functools.cache
def _flop_counter_ops() -> dict[str, OpRule]:
    from torch.utils.flop_counter import flop_registry

    return {op.__name__: _torch_rule(f) for op, f in flop_registry.items() if hasattr(op, "overloads")}


class _LazyOps(Mapping):
    """A table read from somewhere else on first use (PyTorch's registry: imported only when the convention runs)."""

    def __init__(self, load: Callable[[], Mapping[str, OpRule]]) -> None:
        self._load = load

    def __getitem__(self, key: str) -> OpRule:
        return self._load()[key]

    def __iter__(self):
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


# --------------------------------------------------------------------------------------------------------------
# fvcore 0.1.5 (fvcore/nn/jit_handles.py, _DEFAULT_SUPPORTED_OPS in fvcore/nn/flop_count.py)
# --------------------------------------------------------------------------------------------------------------


def _fv_addmm(args: tuple, kwargs: dict, out: Any) -> int:
    """addmm_flop_jit: batch * in * out of the product; the added matrix is free."""
    (n, k), (_, m) = args[1].shape, args[2].shape
    return n * k * m


def _fv_linear(args: tuple, kwargs: dict, out: Any) -> int:
    """linear_flop_jit: input elements * out_features; the bias is free."""
    return numel(args[0].shape) * args[1].shape[0]


def _fv_bmm(args: tuple, kwargs: dict, out: Any) -> int:
    """bmm_flop_jit: n * c * t * d."""
    n, c, t = args[0].shape
    return n * c * t * args[1].shape[-1]


def _fv_matmul(args: tuple, kwargs: dict, out: Any) -> int:
    """matmul_flop_jit: elements of the first operand * the second's last dimension."""
    return numel(args[0].shape) * args[1].shape[-1]


def _fv_conv(transposed: bool | None) -> OpRule:
    """conv_flop_count: batch * weight elements * output (input, when transposed) positions; the bias is free."""

    def rule(args: tuple, kwargs: dict, out: Any) -> int:
        x, w = args[0], args[1]
        t = bool(arg(args, kwargs, 6, "transposed", False)) if transposed is None else transposed
        o = specs_in(out)[0]
        spatial = len(w.shape) - 2
        x_shape = x.shape if len(x.shape) == spatial + 2 else (1, *x.shape)
        o_shape = o.shape if len(o.shape) == spatial + 2 else (1, *o.shape)
        return x_shape[0] * numel(w.shape) * numel((x_shape if t else o_shape)[2:])

    return rule


def _fv_einsum(args: tuple, kwargs: dict, out: Any) -> int:
    """einsum_flop_jit: two bmm-shaped equations by hand, any other as numpy's optimal path counts it, halved."""
    equation = args[0].replace(" ", "")
    shapes = [s.shape for s in args[1]]
    letters = OrderedDict((k, 0) for k in equation if k.isalpha()).keys()
    equation = equation.translate({ord(x): 97 + i for i, x in enumerate(letters)})
    if equation == "abc,abd->acd":
        n, c, t = shapes[0]
        return n * c * t * shapes[-1][-1]
    if equation == "abc,adc->adb":
        n, t, g = shapes[0]
        return n * t * g * shapes[-1][1]
    import numpy as np

    path = np.einsum_path(equation, *[np.zeros(s) for s in shapes], optimize="optimal")[1]
    line = next(x for x in path.split("\n") if "optimized flop" in x.lower())
    return int(np.floor(float(line.split(":")[-1]) / 2))


def _fv_norm(affine_index: int) -> OpRule:
    """norm_flop_counter: input elements * 5 with an affine weight, 4 without."""

    def rule(args: tuple, kwargs: dict, out: Any) -> int:
        weight = args[affine_index] if len(args) > affine_index else None
        return numel(args[0].shape) * (5 if isinstance(weight, TensorSpec) else 4)

    return rule


def _fv_batch_norm(args: tuple, kwargs: dict, out: Any) -> int:
    """batchnorm_flop_jit: in training the norm rule; in eval input elements, twice with an affine weight."""
    if arg(args, kwargs, 5, "training", False):
        return _fv_norm(1)(args, kwargs, out)
    return numel(args[0].shape) * (2 if isinstance(args[1], TensorSpec) else 1)


def _fv_elementwise(input_scale: int, output_scale: int) -> OpRule:
    """elementwise_flop_counter: input elements * input_scale + output elements * output_scale."""

    def rule(args: tuple, kwargs: dict, out: Any) -> int:
        return input_scale * numel(args[0].shape) + output_scale * numel(specs_in(out)[0].shape)

    return rule


FVCORE_OPS: dict[str, OpRule] = {
    "addmm": _fv_addmm, "bmm": _fv_bmm, "einsum": _fv_einsum, "matmul": _fv_matmul, "mm": _fv_matmul,
    "linear": _fv_linear,
    "_convolution": _fv_conv(None), "convolution": _fv_conv(None),
    **{f"conv{d}d": _fv_conv(False) for d in (1, 2, 3)},
    **{f"conv_transpose{d}d": _fv_conv(True) for d in (1, 2, 3)},
    "batch_norm": _fv_batch_norm, "group_norm": _fv_norm(2), "layer_norm": _fv_norm(2),
    "instance_norm": _fv_norm(1),
    "upsample_nearest2d": _fv_elementwise(0, 1), "upsample_bilinear2d": _fv_elementwise(0, 4),
    "adaptive_avg_pool2d": _fv_elementwise(1, 0), "grid_sampler": _fv_elementwise(0, 4),
}


# --------------------------------------------------------------------------------------------------------------
# thop 0.1.1 (thop/profile.py register_hooks, thop/vision/basic_hooks.py, thop/vision/calc_func.py, thop/rnn_hooks.py)
# --------------------------------------------------------------------------------------------------------------


def _first(inputs: tuple) -> Any:
    return inputs[0]


def _thop_conv(m: Any, inputs: tuple, y: Any) -> int:
    """count_convNd -> calculate_conv2d_flops: output elements * (in_channels // groups) * kernel; no bias."""
    x = _first(inputs)
    return y.numel() * (x.shape[1] // m.groups) * numel(m.weight.shape[2:])


def _thop_norm(m: Any, inputs: tuple, y: Any) -> int:
    """count_normalization -> calculate_norm: 2 per input element, doubled when affine."""
    affine = getattr(m, "affine", False) or getattr(m, "elementwise_affine", False)
    return 2 * _first(inputs).numel() * (2 if affine else 1)


def _thop_zero(m: Any, inputs: tuple, y: Any) -> int:
    """zero_ops: 0 for every call."""
    return 0


def _thop_input_elements(m: Any, inputs: tuple, y: Any) -> int:
    """count_prelu (in eval) -> calculate_relu: input elements."""
    return _first(inputs).numel()


def _thop_softmax(m: Any, inputs: tuple, y: Any) -> int:
    """count_softmax -> calculate_softmax: rows * (exp + add + div) = rows * (3 * features - 1)."""
    x = _first(inputs)
    features = x.shape[m.dim]
    return x.numel() // features * (3 * features - 1)


def _thop_avgpool(m: Any, inputs: tuple, y: Any) -> int:
    """count_avgpool -> calculate_avgpool: output elements."""
    return y.numel()


def _thop_adaptive_avgpool(m: Any, inputs: tuple, y: Any) -> int:
    """count_adap_avgpool -> calculate_adaptive_avg: (window + 1) * output elements, the window as a float
    quotient of the sizes, truncated once at the end."""
    window = math.prod(i / o for i, o in zip(_first(inputs).shape[2:], y.shape[2:], strict=True))
    return int((window + 1) * y.numel())


_THOP_UPSAMPLE = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 224 + 35}


def _thop_upsample(m: Any, inputs: tuple, y: Any) -> int:
    """count_upsample -> calculate_upsample: output elements * 1 (nearest), 5 (linear), 11 (bilinear),
    259 (bicubic); other modes 0."""
    return y.numel() * _THOP_UPSAMPLE.get(m.mode, 0)


def _thop_linear(m: Any, inputs: tuple, y: Any) -> int:
    """count_linear -> calculate_linear: in_features * output elements; no bias."""
    return m.in_features * y.numel()


def _thop_rnn_cell_ops(kind: str, input_size: int, hidden: int, bias: bool) -> int:
    """_count_rnn_cell, _count_gru_cell, _count_lstm_cell."""
    state = (input_size + hidden) * hidden + hidden + (2 * hidden if bias else 0)
    if kind == "rnn":
        return state
    if kind == "gru":
        return 3 * state + hidden + 3 * hidden
    return 4 * state + 3 * hidden + hidden


def _thop_cell(kind: str) -> ModuleRule:
    def rule(m: Any, inputs: tuple, y: Any) -> int:
        """count_rnn_cell / count_gru_cell / count_lstm_cell: one step per sample."""
        return _thop_rnn_cell_ops(kind, m.input_size, m.hidden_size, m.bias) * _first(inputs).shape[0]

    return rule


def _thop_rnn(kind: str) -> ModuleRule:
    def rule(m: Any, inputs: tuple, y: Any) -> int:
        """count_rnn / count_gru / count_lstm: every layer's cell, per step and sample (packed: the largest batch)."""
        x = _first(inputs)
        if hasattr(x, "batch_sizes"):
            batch, steps = int(x.batch_sizes.max()), x.batch_sizes.numel()
        else:
            batch, steps = (x.shape[0], x.shape[1]) if m.batch_first else (x.shape[1], x.shape[0])
        directions = 2 if m.bidirectional else 1
        ops = _thop_rnn_cell_ops(kind, m.input_size, m.hidden_size, m.bias) * directions
        ops += (m.num_layers - 1) * _thop_rnn_cell_ops(kind, m.hidden_size * directions, m.hidden_size,
                                                       m.bias) * directions
        return ops * steps * batch

    return rule


_NN = "torch.nn."
THOP_MODULES: dict[str, ModuleRule] = {
    _NN + "ZeroPad2d": _thop_zero,
    **{_NN + f"Conv{d}d": _thop_conv for d in (1, 2, 3)},
    **{_NN + f"ConvTranspose{d}d": _thop_conv for d in (1, 2, 3)},
    **{_NN + f"BatchNorm{d}d": _thop_norm for d in (1, 2, 3)},
    _NN + "LayerNorm": _thop_norm,
    **{_NN + f"InstanceNorm{d}d": _thop_norm for d in (1, 2, 3)},
    _NN + "SyncBatchNorm": _thop_norm,
    _NN + "PReLU": _thop_input_elements,
    _NN + "Softmax": _thop_softmax,
    _NN + "ReLU": _thop_zero, _NN + "ReLU6": _thop_zero,
    _NN + "LeakyReLU": _thop_zero,  # count_relu -> calculate_relu_flops returns 0
    **{_NN + f"MaxPool{d}d": _thop_zero for d in (1, 2, 3)},
    **{_NN + f"AdaptiveMaxPool{d}d": _thop_zero for d in (1, 2, 3)},
    **{_NN + f"AvgPool{d}d": _thop_avgpool for d in (1, 2, 3)},
    **{_NN + f"AdaptiveAvgPool{d}d": _thop_adaptive_avgpool for d in (1, 2, 3)},
    _NN + "Linear": _thop_linear,
    _NN + "Dropout": _thop_zero,
    _NN + "Upsample": _thop_upsample, _NN + "UpsamplingBilinear2d": _thop_upsample,
    _NN + "UpsamplingNearest2d": _thop_upsample,
    _NN + "RNNCell": _thop_cell("rnn"), _NN + "GRUCell": _thop_cell("gru"), _NN + "LSTMCell": _thop_cell("lstm"),
    _NN + "RNN": _thop_rnn("rnn"), _NN + "GRU": _thop_rnn("gru"), _NN + "LSTM": _thop_rnn("lstm"),
    _NN + "PixelShuffle": _thop_zero,
}


# --------------------------------------------------------------------------------------------------------------
# ptflops 0.7.5, pytorch backend (ptflops/pytorch_ops.py MODULES_MAPPING, FUNCTIONAL_MAPPING, TENSOR_OPS_MAPPING;
# ptflops/pytorch_engine.py patch_functional, patch_tensor_ops)
# --------------------------------------------------------------------------------------------------------------


def _pt_output_elements(m: Any, inputs: tuple, y: Any) -> int:
    """relu_flops_counter_hook: output elements."""
    return y.numel()


def _pt_upsample(m: Any, inputs: tuple, y: Any) -> int:
    """upsample_flops_counter_hook: the elements of output[0] (of the first sample, times the batch)."""
    first = y[0]
    return first.shape[0] * numel(first.shape[1:])


def _pt_linear(m: Any, inputs: tuple, y: Any) -> int:
    """linear_flops_counter_hook: (in * out + out with a bias) per row."""
    x = _first(inputs)
    bias = y.shape[-1] if m.bias is not None else 0
    return (x.shape[-1] * y.shape[-1] + bias) * numel(x.shape[:-1])


def _pt_input_elements(m: Any, inputs: tuple, y: Any) -> int:
    """pool_flops_counter_hook: input elements."""
    return _first(inputs).numel()


def _pt_norm(m: Any, inputs: tuple, y: Any) -> int:
    """bn_flops_counter_hook: input elements, twice when ``affine`` (LayerNorm has none: once)."""
    return _first(inputs).numel() * (2 if getattr(m, "affine", False) else 1)


def _pt_conv(transposed: bool) -> ModuleRule:
    def rule(m: Any, inputs: tuple, y: Any) -> int:
        """conv_flops_counter_hook: kernel * in * out / groups per position (output positions; input positions
        when transposed), plus one per output element with a bias."""
        x = _first(inputs)
        batch = x.shape[0]
        per_position = numel(m.kernel_size) * (m.in_channels * (m.out_channels // m.groups))
        positions = batch * numel((x if transposed else y).shape[2:])
        bias = batch * numel(y.shape[1:]) if m.bias is not None else 0
        return per_position * positions + bias

    return rule


def _pt_rnn_ops(m: Any, w_ih: Any, w_hh: Any) -> int:
    """rnn_flops."""
    ops = w_ih.shape[0] * w_ih.shape[1] + w_hh.shape[0] * w_hh.shape[1]
    h = m.hidden_size
    name = type(m).__name__
    if name in ("RNN", "RNNCell"):
        return ops + h
    if name in ("GRU", "GRUCell"):
        return ops + h + 3 * h + 3 * h
    return ops + 4 * h + 3 * h + 3 * h


def _rnn_layers(m: Any, inputs: tuple, layer_ops: Any) -> int:
    """The RNN rule ptflops and calflops share: ``layer_ops`` of every layer's weights plus its biases, per sample
    and step (dimension 0 and 1 of the input, as they read them), doubled when bidirectional."""
    x = _first(inputs)
    ops = 0
    for i in range(m.num_layers):
        ops += layer_ops(m, getattr(m, f"weight_ih_l{i}"), getattr(m, f"weight_hh_l{i}"))
        if m.bias:
            ops += getattr(m, f"bias_ih_l{i}").shape[0] + getattr(m, f"bias_hh_l{i}").shape[0]
    return ops * x.shape[0] * x.shape[1] * (2 if m.bidirectional else 1)


def _rnn_cell(m: Any, inputs: tuple, cell_ops: Any) -> int:
    """The RNN-cell rule ptflops and calflops share: ``cell_ops`` of the weights plus the biases, per sample."""
    ops = cell_ops(m, m.weight_ih, m.weight_hh)
    if m.bias:
        ops += m.bias_ih.shape[0] + m.bias_hh.shape[0]
    return ops * _first(inputs).shape[0]


def _pt_rnn(m: Any, inputs: tuple, y: Any) -> int:
    """rnn_flops_counter_hook."""
    return _rnn_layers(m, inputs, _pt_rnn_ops)


def _pt_rnn_cell(m: Any, inputs: tuple, y: Any) -> int:
    """rnn_cell_flops_counter_hook."""
    return _rnn_cell(m, inputs, _pt_rnn_ops)


def _pt_multihead_attention(m: Any, inputs: tuple, y: Any) -> int:
    """multihead_attention_counter_hook: projections, per-head scores, softmax and values, the output projection."""
    q, k, v = inputs[:3]
    batch_first = getattr(m, "batch_first", False)
    batch, length = (0, 1) if batch_first else (1, 0)
    qdim, kdim, vdim = q.shape[2], k.shape[2], v.shape[2]
    qlen, klen, vlen = q.shape[length], k.shape[length], v.shape[length]
    ops = qlen * qdim + qlen * qdim * qdim + klen * kdim * kdim + vlen * vdim * vdim
    if m.in_proj_bias is not None:
        ops += (qlen + klen + vlen) * qdim
    heads = m.num_heads
    ops += heads * (qlen * klen * (qdim // heads) + qlen * klen + qlen * klen * (vdim // heads))
    ops += qlen * vdim * (vdim + 1)
    return ops * q.shape[batch]


def _pt_timm_attention(m: Any, inputs: tuple, y: Any) -> int:
    """timm_attention_counter_hook: the scaling, per-head scores, softmax and values (projections not counted)."""
    b, n, _ = _first(inputs).shape
    d, heads = m.head_dim, m.num_heads
    return b * (n * d * heads + heads * (n * n * d + n * n + n * n * d))


PTFLOPS_MODULES: dict[str, ModuleRule] = {
    **{_NN + f"Conv{d}d": _pt_conv(False) for d in (1, 2, 3)},
    **{_NN + f"ConvTranspose{d}d": _pt_conv(True) for d in (1, 2, 3)},
    **{_NN + n: _pt_output_elements for n in ("ReLU", "PReLU", "ELU", "LeakyReLU", "ReLU6", "GELU")},
    **{_NN + f"{kind}Pool{d}d": _pt_input_elements for kind in ("Max", "Avg", "AdaptiveMax", "AdaptiveAvg")
       for d in (1, 2, 3)},
    **{_NN + f"BatchNorm{d}d": _pt_norm for d in (1, 2, 3)},
    **{_NN + f"InstanceNorm{d}d": _pt_norm for d in (1, 2, 3)},
    _NN + "GroupNorm": _pt_norm, _NN + "LayerNorm": _pt_norm,
    _NN + "Linear": _pt_linear,
    _NN + "Upsample": _pt_upsample,
    _NN + "RNN": _pt_rnn, _NN + "GRU": _pt_rnn, _NN + "LSTM": _pt_rnn,
    _NN + "RNNCell": _pt_rnn_cell, _NN + "LSTMCell": _pt_rnn_cell, _NN + "GRUCell": _pt_rnn_cell,
    _NN + "MultiheadAttention": _pt_multihead_attention,
    # NB: ptflops' torchvision.ops.DeformConv2d rule is left out: the op needs torchvision's compiled kernels
    "timm.models.vision_transformer.Attention": _pt_timm_attention,
}


def _pt_input_numel(x: Any, *args: Any, **kwargs: Any) -> int:
    """_numel_functional_flops_hook: input elements."""
    return x.numel()


def _pt_interpolate(*args: Any, **kwargs: Any) -> int:
    """_interpolate_functional_flops_hook: batch * channels * the output size, from ``size`` or ``scale_factor``."""
    x = kwargs.get("input", args[0] if args else None)
    size = kwargs.get("size", args[1] if len(args) > 1 else None)
    if size is not None:
        if isinstance(size, tuple | list):
            return int(numel(size)) * numel(x.shape[:2])
        return int(size) ** (x.dim() - 2) * numel(x.shape[:2])
    scale = kwargs.get("scale_factor", args[2] if len(args) > 2 else None)
    if isinstance(scale, tuple) and len(scale) == x.dim() - 2:
        return int(x.numel() * int(numel(scale)))
    return int(x.numel() * scale ** (x.dim() - 2))


def _pt_matmul(a: Any, b: Any, *args: Any, **kwargs: Any) -> int:
    """_matmul_tensor_flops_hook: elements of the first operand * the second's last dimension."""
    return numel(a.shape) * b.shape[-1]


def _pt_addmm(c: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1, out: Any = None) -> int:
    """_addmm_tensor_flops_hook: the product, plus the added matrix's elements unless beta is 0."""
    return numel(a.shape) * b.shape[-1] + (numel(c.shape) if beta != 0 else 0)


def _broadcast_elements(a: Any, b: Any) -> int:
    """_elementwise_tensor_flops_hook: elements of the broadcast shape (1 for two numbers)."""
    import torch

    if not torch.is_tensor(a):
        return numel(b.shape) if torch.is_tensor(b) else 1
    if not torch.is_tensor(b):
        return numel(a.shape)
    rank = max(a.dim(), b.dim())
    sa, sb = (1,) * (rank - a.dim()) + tuple(a.shape), (1,) * (rank - b.dim()) + tuple(b.shape)
    return numel(max(i, j) for i, j in zip(sa, sb, strict=True))


def _pt_elementwise(a: Any, b: Any, *args: Any, **kwargs: Any) -> int:
    return _broadcast_elements(a, b)


_F = "torch.nn.functional."
PTFLOPS_FUNCTIONS: dict[str, FunctionRule] = {
    **{_F + n: _pt_input_numel for n in ("relu", "prelu", "elu", "relu6", "gelu", "softmax", "silu")},
    **{_F + f"{kind}_pool{d}d": _pt_input_numel for kind in ("avg", "max", "adaptive_avg", "adaptive_max")
       for d in (1, 2, 3)},
    _F + "upsample": _pt_interpolate, _F + "interpolate": _pt_interpolate,
    "torch.matmul": _pt_matmul, "torch.Tensor.matmul": _pt_matmul,
    "torch.mm": _pt_matmul, "torch.Tensor.mm": _pt_matmul,
    "torch.bmm": _pt_matmul, "torch.Tensor.bmm": _pt_matmul,
    "torch.addmm": _pt_addmm, "torch.Tensor.addmm": _pt_addmm, "torch.baddbmm": _pt_addmm,
    "torch.mul": _pt_elementwise, "torch.Tensor.mul": _pt_elementwise,
    "torch.add": _pt_elementwise, "torch.Tensor.add": _pt_elementwise,
}


# --------------------------------------------------------------------------------------------------------------
# calflops 0.3.2 (calflops/pytorch_ops.py: _patch_functionals, _patch_tensor_methods, MODULE_HOOK_MAPPING; the
# FLOPs, which DeepSpeed's flops profiler counts the same way)
# --------------------------------------------------------------------------------------------------------------


def _cf_linear(x: Any, weight: Any, bias: Any = None) -> int:
    """_linear_flops_compute: 2 * input elements * out_features; no bias."""
    return 2 * x.numel() * weight.shape[0]


def _cf_input_numel(x: Any, *args: Any, **kwargs: Any) -> int:
    """_relu_flops_compute and its kin, _pool_flops_compute, _softmax_flops_compute: input elements."""
    return x.numel()


def _cf_tuple(value: Any, length: int) -> tuple:
    return value if isinstance(value, tuple) else (value,) * length


def _cf_output_positions(x: Any, kernel: list, stride: Any, padding: Any, dilation: Any) -> int:
    """The output positions of an ordinary convolution, from its arguments, as calflops computes them ('same'
    padding as (dilation * (kernel - 1)) // 2 per side)."""
    sizes = list(x.shape[2:])
    n = len(sizes)
    strides, dilations = _cf_tuple(stride, n), _cf_tuple(dilation, n)
    if isinstance(padding, str):
        pads = (0,) * n if padding == "valid" else tuple(d * (k - 1) // 2 for d, k in zip(dilations, kernel,
                                                                                          strict=True))
    else:
        pads = _cf_tuple(padding, n)
    return numel((s + 2 * p - (d * (k - 1) + 1)) // st + 1
                 for s, p, d, k, st in zip(sizes, pads, dilations, kernel, strides, strict=True))


def _cf_conv(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
             groups: int = 1) -> int:
    """_conv_flops_compute: 2 * kernel * in * out / groups per output position (computed from the arguments),
    plus out_channels per position with a bias."""
    kernel = list(weight.shape[2:])
    positions = x.shape[0] * _cf_output_positions(x, kernel, stride, padding, dilation)
    macs = numel(kernel) * x.shape[1] * (weight.shape[0] // groups) * positions
    return 2 * macs + (weight.shape[0] * positions if bias is not None else 0)


def _cf_conv_transpose(x: Any, weight: Any, bias: Any = None, stride: Any = 1, padding: Any = 0,
                       output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> int:
    """_conv_trans_flops_compute: 2 * kernel * in * out / groups per input position, plus out_channels per
    (ordinary convolution's) output position with a bias."""
    kernel = list(weight.shape[2:])
    macs = numel(kernel) * x.shape[1] * (weight.shape[1] // groups) * x.shape[0] * numel(x.shape[2:])
    positions = x.shape[0] * _cf_output_positions(x, kernel, stride, padding, dilation)
    return 2 * macs + (weight.shape[1] * positions if bias is not None else 0)


def _cf_batch_norm(x: Any, running_mean: Any = None, running_var: Any = None, weight: Any = None, bias: Any = None,
                   training: bool = False, *args: Any, **kwargs: Any) -> int:
    """_batch_norm_flops_compute: input elements * (5 affine, 4 not) in training; * (2, 1) in eval."""
    affine = weight is not None
    if training:
        return x.numel() * (5 if affine else 4)
    return x.numel() * (2 if affine else 1)


def _cf_norm(weight_index: int, weight_name: str) -> FunctionRule:
    def rule(*args: Any, **kwargs: Any) -> int:
        """_layer_norm_flops_compute, _group_norm_flops_compute, _instance_norm_flops_compute: input elements *
        (5 with a weight, 4 without)."""
        weight = args[weight_index] if len(args) > weight_index else kwargs.get(weight_name)
        return args[0].numel() * (5 if weight is not None else 4)

    return rule


def _cf_upsample(*args: Any, **kwargs: Any) -> int:
    """_upsample_flops_compute: the elements of ``size`` (not times batch and channels); with only a scale factor,
    the input's elements."""
    x = args[0]
    size = kwargs.get("size", args[1] if len(args) > 1 else None)
    if size is not None:
        return int(numel(size)) if isinstance(size, tuple | list) else int(size)
    return x.numel()


def _cf_matmul(a: Any, b: Any, *, out: Any = None) -> int:
    """_matmul_flops_compute: 2 * elements of the first operand * the second's last dimension."""
    return 2 * numel(a.shape) * b.shape[-1]


def _cf_addmm(c: Any, a: Any, b: Any, *, beta: Any = 1, alpha: Any = 1, out: Any = None) -> int:
    """_addmm_flops_compute, _tensor_addmm_flops_compute: 2 * the product, plus the added tensor's elements."""
    return 2 * numel(a.shape) * b.shape[-1] + numel(c.shape)


def _cf_einsum(equation: str, *operands: Any) -> int:
    """_einsum_flops_compute: numpy's optimal path's flop count."""
    import numpy as np

    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = tuple(operands[0])
    equation = equation.replace(" ", "")
    letters = OrderedDict((k, 0) for k in equation if k.isalpha()).keys()
    equation = equation.translate({ord(x): 97 + i for i, x in enumerate(letters)})
    path = np.einsum_path(equation, *[np.zeros(o.shape) for o in operands], optimize="optimal")[1]
    line = next(x for x in path.split("\n") if "optimized flop" in x.lower())
    return int(float(line.split(":")[-1]))


def _cf_elementwise(a: Any, b: Any, *args: Any, **kwargs: Any) -> int:
    """_elementwise_flops_compute (mul, add): elements of the broadcast shape."""
    return _broadcast_elements(a, b)


def _cf_rnn_ops(m: Any, w_ih: Any, w_hh: Any) -> int:
    """_rnn_flops: 2 * weights - gates per product, then the gates' elementwise work."""
    gates = w_ih.shape[0]
    ops = 2 * w_ih.shape[0] * w_ih.shape[1] - gates + 2 * w_hh.shape[0] * w_hh.shape[1] - gates
    h = m.hidden_size
    name = type(m).__name__
    if name in ("RNN", "RNNCell"):
        return ops + h
    if name in ("GRU", "GRUCell"):
        return ops + h + 3 * h + 3 * h
    return ops + 4 * h + 3 * h + 3 * h


def _cf_rnn(m: Any, inputs: tuple, y: Any) -> int:
    """_rnn_forward_hook: as ptflops' RNN rule, with 2 FLOPs per multiply-add."""
    return _rnn_layers(m, inputs, _cf_rnn_ops)


def _cf_rnn_cell(m: Any, inputs: tuple, y: Any) -> int:
    """_rnn_cell_forward_hook."""
    return _rnn_cell(m, inputs, _cf_rnn_ops)


CALFLOPS_FUNCTIONS: dict[str, FunctionRule] = {
    _F + "linear": _cf_linear,
    **{_F + f"conv{d}d": _cf_conv for d in (1, 2, 3)},
    **{_F + f"conv_transpose{d}d": _cf_conv_transpose for d in (1, 2, 3)},
    **{_F + n: _cf_input_numel for n in ("relu", "prelu", "elu", "leaky_relu", "relu6", "silu", "gelu", "softmax")},
    _F + "batch_norm": _cf_batch_norm,
    _F + "layer_norm": _cf_norm(2, "weight"), _F + "group_norm": _cf_norm(2, "weight"),
    _F + "instance_norm": _cf_norm(3, "weight"),
    **{_F + f"{kind}_pool{d}d": _cf_input_numel for kind in ("avg", "max", "adaptive_avg", "adaptive_max")
       for d in (1, 2, 3)},
    _F + "upsample": _cf_upsample, _F + "interpolate": _cf_upsample,
    _F + "embedding": lambda *args, **kwargs: 0,  # _embedding_flops_compute
    "torch.matmul": _cf_matmul, "torch.Tensor.matmul": _cf_matmul,
    "torch.addmm": _cf_addmm, "torch.Tensor.addmm": _cf_addmm, "torch.baddbmm": _cf_addmm,
    "torch.mul": _cf_elementwise, "torch.Tensor.mul": _cf_elementwise,
    "torch.add": _cf_elementwise, "torch.Tensor.add": _cf_elementwise,
    "torch.einsum": _cf_einsum,
}

CALFLOPS_MODULES: dict[str, ModuleRule] = {
    _NN + "RNN": _cf_rnn, _NN + "GRU": _cf_rnn, _NN + "LSTM": _cf_rnn,
    _NN + "RNNCell": _cf_rnn_cell, _NN + "LSTMCell": _cf_rnn_cell, _NN + "GRUCell": _cf_rnn_cell,
}


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention("flopcounter", "PyTorch's FlopCounterMode", "FLOPs",
               "2 per multiply-add, matrix products, convolutions and attention only, on the ops autograd runs",
               ops=_LazyOps(_flop_counter_ops), as_autograd=True),
    Convention("fvcore", "fvcore", "MACs",
               "1 per multiply-add, its 17 ops only (products, convolutions, norms, upsampling, adaptive pooling); "
               "biases, activations and additions free", ops=FVCORE_OPS),
    Convention("thop", "thop", "MACs",
               "modules of the classes it knows only (exact class), no bias, ReLU and max pooling free; "
               "functional calls and other modules 0", modules=THOP_MODULES, hook_per_path=True),
    Convention("ptflops", "ptflops (pytorch backend)", "MACs",
               "modules of the classes it knows, with biases, activations and pooling; plus patched functionals "
               "and tensor ops, counted in the total only", modules=PTFLOPS_MODULES, functions=PTFLOPS_FUNCTIONS,
               functions_apart=True, per_sample=True),
    Convention("calflops", "calflops", "FLOPs",
               "2 per multiply-add of patched functionals and tensor ops, bias adds and activations 1 per element",
               functions=CALFLOPS_FUNCTIONS, modules=CALFLOPS_MODULES),
)}

#: The names ``--convention`` takes.
NAMES: tuple[str, ...] = tuple(CONVENTIONS)
