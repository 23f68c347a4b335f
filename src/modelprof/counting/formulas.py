"""The registry of cost formulas, one per aten op.

Counting convention (see docs/counting.md):

* ``flops``  multiply-accumulates counted once (torchstat's "Flops", thop's and ptflops' "MACs"); an op that is
  not a multiply-accumulate (an activation, a comparison, a max) counts one per element it produces, as torchstat
  counts ReLU.
* ``madd``   multiplications and additions counted separately: a dot product of length K is K multiplications and
  K - 1 additions, so ``madd = 2 * flops - 1`` per output of a matrix product.
* ``mem_read``  bytes of every tensor the op reads (inputs, weights, biases) at its real element size.
* ``mem_write`` bytes of every tensor the op writes.

Every count covers the whole batch. Parameters are read once per call, not once per sample (torchstat's N*P).

Each formula is a pure function ``formula(args, kwargs, out) -> Cost`` where every tensor has been replaced by a
:class:`TensorSpec` (shape and element size only), so formulas are tested without running a model.
Ops with no formula are decomposed into the ops they are built of when PyTorch has a decomposition
(``einsum`` becomes ``bmm``, ``instance_norm`` becomes ``batch_norm``), ops in :data:`FREE_OPS` cost nothing, and
everything else is reported as unsupported rather than counted as zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

aten = torch.ops.aten


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What a formula may know of a tensor: its shape and the bytes of one element.

    (Not a NamedTuple: pytree would flatten a tuple into its fields.)
    """

    shape: tuple[int, ...]
    itemsize: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize


@dataclass(frozen=True, slots=True)
class Cost:
    """The cost of one op call: arithmetic and memory traffic, exact integers."""

    madd: int = 0
    flops: int = 0
    mem_read: int = 0
    mem_write: int = 0


Formula = Callable[[tuple, dict, Any], Cost]

#: op packet -> formula; filled by :func:`register_formula`.
FORMULAS: dict[Any, Formula] = {}


def _packet(op: Any) -> Any:
    return getattr(op, "overloadpacket", op)


def register_formula(*ops: Any, table: dict[Any, Formula] | None = None) -> Callable[[Formula], Formula]:
    """Register ``formula(args, kwargs, out) -> Cost`` for one or more aten ops (packets or overloads).

    Public so that users can count their own custom ops. A second registration for the same op is refused
    with ``ValueError`` so that two formulas can never silently compete. ``table`` registers into another table
    than the global registry (``dict(FORMULAS)``, say), to count with it through ``count_costs(formulas=...)``.
    """
    target = FORMULAS if table is None else table

    def decorator(formula: Formula) -> Formula:
        for op in ops:
            key = _packet(op)
            if key in target:
                raise ValueError(f"a cost formula for {key} is already registered")
            target[key] = formula
        return formula

    return decorator


#: Every op name the registry asked for, so a test can check that each exists in the installed PyTorch (a
#: misspelt name would otherwise be dropped silently by :func:`_ops`).
REQUESTED_OP_NAMES: list[str] = []


def _ops(*names: str) -> list[Any]:
    """The aten packets with these names that exist in this PyTorch build (older builds lack a few)."""
    REQUESTED_OP_NAMES.extend(names)
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


#: Ops that only change metadata (views, shapes, dtype queries) or allocate without writing: they cost nothing.
FREE_OPS: frozenset[Any] = frozenset(
    _ops(
        "view", "_unsafe_view", "_reshape_alias", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze",
        "slice", "select", "narrow", "split", "split_with_sizes", "unbind", "detach", "alias", "as_strided",
        "view_as", "movedim", "diagonal", "unfold", "lift_fresh", "empty", "empty_like", "empty_strided",
        "new_empty", "new_empty_strided", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "dim",
        "is_same_size", "_local_scalar_dense", "is_nonzero", "view_as_real", "view_as_complex", "real", "imag",
        "_assert_async", "_assert_tensor_metadata", "resolve_conj", "resolve_neg", "conj", "_neg_view",
        "_conj", "numpy_T", "mT", "mH", "adjoint", "expand_as", "unflatten", "chunk", "tensor_split", "hsplit",
        "vsplit", "lift_fresh_copy", "_to_dense", "set_", "record_stream", "detach_", "unsafe_split",
        "unsafe_split_with_sizes", "unsafe_chunk", "as_strided_", "transpose_", "t_", "squeeze_", "unsqueeze_",
    )
    + [torch.ops.prim.device]
    # the optimizers' record_function ranges: profiler bookkeeping, no tensor work
    + [getattr(torch.ops.profiler, n) for n in ("_record_function_enter", "_record_function_enter_new",
                                                "_record_function_exit") if hasattr(torch.ops.profiler, n)]
    # a functional collective's wait moves and computes nothing
    + [getattr(torch.ops._c10d_functional, n) for n in ("wait_tensor",) if hasattr(torch.ops._c10d_functional, n)]
)


def arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` of an aten call, or keyword ``name``, or ``default``."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def leaves(value: Any) -> Iterator[Any]:
    """Every leaf of nested tuples, lists and dicts (a small, fast stand-in for pytree on op arguments)."""
    if isinstance(value, tuple | list):
        for item in value:
            yield from leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    else:
        yield value


def specs_in(*trees: Any) -> list[TensorSpec]:
    """Every TensorSpec inside these (possibly nested) values."""
    return [x for x in leaves(trees) if isinstance(x, TensorSpec)]


def io_cost(args: Iterable, out: Any, kwargs: dict | None = None, madd: int = 0, flops: int = 0) -> Cost:
    """A cost whose memory traffic is every tensor argument read and every tensor output written."""
    read = sum(s.nbytes for s in specs_in(args, kwargs or {}))
    write = sum(s.nbytes for s in specs_in(out))
    return Cost(madd, flops, read, write)


def _first(out: Any) -> TensorSpec:
    return specs_in(out)[0]


# --------------------------------------------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------------------------------------------


def conv_cost(x: TensorSpec, w: TensorSpec, bias: TensorSpec | None, out: TensorSpec, transposed: bool) -> Cost:
    """Convolution of any dimension, plain or transposed (torchstat's Conv2d / ConvTranspose2d formulas).

    K = prod(kernel), b = 1 with bias, g groups.
    Plain: weight is (Co, Ci/g, *K); per output element K*Ci/g multiplications and K*Ci/g - 1 + b additions:
        Flops = N*Co*prod(out_spatial) * K*Ci/g + b*N*Co*prod(out_spatial)
        MAdd  = N*Co*prod(out_spatial) * (2*K*Ci/g - 1 + b)
    Transposed: weight is (Ci, Co/g, *K); every input element is scattered into K*Co/g outputs:
        Flops = N*Ci*prod(in_spatial) * K*Co/g + b*N*Co*prod(out_spatial)
        MAdd  = N*Co*prod(in_spatial) * (2*K*Ci/g - 1 + b)      (torchstat's ConvTranspose2d)
    MemRead = (input + weight + bias) bytes; MemWrite = output bytes.
    """
    b = 1 if bias is not None else 0
    k = math.prod(w.shape[2:])
    n, ci = x.shape[0], x.shape[1]
    co = out.shape[1]
    if transposed:
        groups = co // w.shape[1]
        ci_g = ci // groups
        in_pixels = n * math.prod(x.shape[2:])
        flops = in_pixels * ci * k * w.shape[1] + b * out.numel
        madd = in_pixels * co * (2 * k * ci_g - 1 + b)
    else:
        ci_g = w.shape[1]
        flops = out.numel * k * ci_g + b * out.numel
        madd = out.numel * (2 * k * ci_g - 1 + b)
    read = x.nbytes + w.nbytes + (bias.nbytes if bias is not None else 0)
    return Cost(madd, flops, read, out.nbytes)


def _batched(x: TensorSpec, out: TensorSpec, spatial: int) -> tuple[TensorSpec, TensorSpec]:
    """Give unbatched conv input (C, *spatial) a batch of one so the formula sees (N, C, *spatial)."""
    if len(x.shape) == spatial + 1:
        return TensorSpec((1, *x.shape), x.itemsize), TensorSpec((1, *out.shape), out.itemsize)
    return x, out


def _conv_formula(transposed: bool, fixed_transposed: bool = True) -> Formula:
    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        x, w = args[0], args[1]
        bias = arg(args, kwargs, 2, "bias")
        t = transposed if fixed_transposed else bool(arg(args, kwargs, 6, "transposed", False))
        xb, ob = _batched(x, _first(out), len(w.shape) - 2)
        return conv_cost(xb, w, bias, ob, t)

    formula.__doc__ = conv_cost.__doc__
    return formula


register_formula(*_ops("conv1d", "conv2d", "conv3d"))(_conv_formula(False))
register_formula(*_ops("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"))(_conv_formula(True))
register_formula(*_ops("convolution", "_convolution"))(_conv_formula(False, fixed_transposed=False))


# --------------------------------------------------------------------------------------------------------------
# Matrix products
# --------------------------------------------------------------------------------------------------------------


def matmul_cost(out_numel: int, k: int, extra_adds: int = 0) -> tuple[int, int]:
    """(MAdd, Flops) of a product whose every output is a dot product of length K.

    Flops = out * K;  MAdd = out * (2K - 1) + extra_adds   (extra_adds: the ``input +`` of addmm/baddbmm).
    """
    return out_numel * (2 * k - 1) + extra_adds, out_numel * k


@register_formula(*_ops("linear"))
def linear_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Linear on input of any rank (torchstat's Linear, extended to N-D input).

    M = input rows (all leading dimensions), Ci = in_features, Co = out_features:
        Flops = M*Ci*Co;  MAdd = M*Co*(2*Ci - 1);  MemRead = (input + weight + bias) bytes; MemWrite = output bytes.
    NB: the bias addition is left out of MAdd and Flops, exactly as torchstat and thop do, so totals stay
    comparable with theirs and with the published ResNet counts.
    """
    madd, flops = matmul_cost(_first(out).numel, args[1].shape[1])  # output = rows * Co, K = Ci
    return io_cost(args, out, kwargs, madd, flops)


@register_formula(*_ops("mm", "bmm", "matmul", "mv", "dot", "vdot", "inner"))
def matmul_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """mm, bmm, matmul (broadcast batch, 1-D operands), mv, dot.

    Every output element is a dot product over K = a.shape[-1]:  Flops = out*K;  MAdd = out*(2K - 1).
    """
    a = args[0]
    k = a.shape[-1] if a.shape else 1
    madd, flops = matmul_cost(_first(out).numel, k)
    return io_cost(args, out, kwargs, madd, flops)


@register_formula(*_ops("addmm", "baddbmm", "addmv", "addbmm"))
def addmm_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """addmm(c, a, b) = beta*c + alpha*(a @ b) and its batched forms.

    Flops = out*K;  MAdd = out*(2K - 1) + out   (one more addition per output for ``c``), except where ``c`` is a
    linear layer's bias (1-D, added to a 2-D product): MAdd = out*(2K - 1), as :func:`linear_formula` counts it.
    For addbmm the batch of products is also summed: K = batch * a.shape[-1].
    """
    c, a, o = args[0], args[1], _first(out)
    k = a.shape[-1]
    if len(a.shape) == 3 and len(o.shape) == 2:  # addbmm sums the batch of products too
        k *= a.shape[0]
    # a 1-D c added to a 2-D product is a linear layer's bias (autograd runs Linear as t + addmm): left out, as
    # aten.linear leaves it out, so a layer costs the same in a forward and in a training step's forward
    bias = isinstance(c, TensorSpec) and len(c.shape) == 1 and len(o.shape) == 2
    madd, flops = matmul_cost(o.numel, k, extra_adds=0 if bias else o.numel)
    return io_cost(args, out, kwargs, madd, flops)


def triangular_solve_cost(a: TensorSpec, unitriangular: bool, args: tuple, kwargs: dict, out: Any) -> Cost:
    """A triangular system solved by substitution: A (n × n, batched) against B's columns or rows; each of the
    S = solution elements / n systems finds its n unknowns in turn, the i-th from the i - 1 found before it:

        MAdd = S * (n(n - 1) + d * n);  Flops = S * (n(n - 1)/2 + d * n)

    (n(n - 1)/2 multiplications and as many subtractions, then a division per unknown: d = 0 for a unit diagonal)."""
    n = a.shape[-1]
    systems = _first(out).numel // max(n, 1)
    division = 0 if unitriangular else n
    return io_cost(args, out, kwargs, systems * (n * (n - 1) + division), systems * (n * (n - 1) // 2 + division))


@register_formula(*_ops("linalg_solve_triangular"))
def solve_triangular_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """``linalg_solve_triangular(A, B, *, upper, left, unitriangular)`` (gated delta-rule attention's chunked
    form): see :func:`triangular_solve_cost`."""
    return triangular_solve_cost(args[0], kwargs.get("unitriangular", False), args, kwargs, out)


@register_formula(*_ops("triangular_solve"))
def legacy_triangular_solve_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """``triangular_solve(B, A, upper, transpose, unitriangular)``, A second: see :func:`triangular_solve_cost`."""
    return triangular_solve_cost(args[1], arg(args, kwargs, 4, "unitriangular", False), args, kwargs, out)


@register_formula(*_ops("_grouped_mm"))
def grouped_mm_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Grouped matrix product (mixture-of-experts layers): G products with one call, ``offs`` marking the groups.

    a (M_total, K) @ b (G, K, N) -> (M_total, N), a (G, M, K) @ b (G, K, N) -> (G, M, N) and a (G, M, K) @
    b (K, N_total) -> (M, N_total): every output element is a dot product of length K = a.shape[-1], so
        Flops = out * K;  MAdd = out * (2K - 1).
    a (M, K_total) @ b (K_total, N) -> (G, M, N) splits K into groups K_g that sum to K_total:
        Flops = M*N*K_total = (out / G) * K_total;  MAdd = sum_g M*N*(2K_g - 1) = 2*Flops - out.
    NB: rows past the last offset (padding, which MoE layers do not use) are counted as computed: a formula
    sees shapes, never the values of ``offs``.
    """
    a, b, o = args[0], args[1], _first(out)
    if len(a.shape) == 2 and len(b.shape) == 2:
        flops = o.numel // o.shape[0] * a.shape[1]
    else:
        flops = o.numel * a.shape[-1]
    return io_cost(args, out, kwargs, 2 * flops - o.numel, flops)


def grouped_mm_backward_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """The backward of a grouped product a (S, K) @ b (E, K, N), given its output's gradient g (S, N): the input's
    gradient g @ b_e^T per group, S*K dot products of length N, and the weights' a_e^T @ g per group, E*K*N dot
    products of lengths S_e that sum to S:
        Flops = 2*S*K*N;  MAdd = S*K*(2N - 1) + (2*S*K*N - E*K*N).
    """
    a, b = args[0], args[1]
    (s, k), (e, _, n) = a.shape, b.shape
    return io_cost(args, out, kwargs, s * k * (2 * n - 1) + 2 * s * k * n - e * k * n, 2 * s * k * n)


#: Formulas for ops other libraries define, by qualified name, found when an op has no formula of its own (their
#: library may not be imported, or loaded at all, when this module is): transformers' grouped product for
#: mixture-of-experts layers, which torch.export records in place of ``_grouped_mm`` (``--pp``'s traced stages).
LIBRARY_FORMULAS: dict[str, Formula] = {"transformers::grouped_mm_fallback": grouped_mm_formula,
                                        "transformers::grouped_mm_fallback_backward": grouped_mm_backward_formula}


@register_formula(*_ops("bilinear"))
def bilinear_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Bilinear y_k = x1^T W_k x2 (+ b_k) (torchstat's Bilinear MAdd).

    n1, n2 input features, Co outputs, M rows:
        MAdd = M*Co*(2*n1*n2 + 2*n2 - 1);  Flops = M*Co*(n1*n2 + n2)   (W_k x2, then the dot with x1).
    """
    x1, x2 = args[0], args[1]
    n1, n2 = x1.shape[-1], x2.shape[-1]
    o = _first(out)
    return io_cost(args, out, kwargs, o.numel * (2 * n1 * n2 + 2 * n2 - 1), o.numel * (n1 * n2 + n2))


# --------------------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------------------


def attention_cost(q: TensorSpec, k: TensorSpec, v: TensorSpec, masked: bool) -> tuple[int, int]:
    """(MAdd, Flops) of softmax(q @ k^T * scale + mask) @ v, whatever backend runs it.

    q (..., L, E), k (..., S, E), v (..., S, Ev), BH = prod(q.shape[:-2]) (grouped-query heads count as q's):
        Flops = BH*L*S*E + BH*L*S*Ev + BH*L*S (scale) [+ BH*L*S mask] + BH*L*(3S - 1) (softmax)
        MAdd  = BH*L*S*(2E - 1) + BH*L*Ev*(2S - 1) + BH*L*S [+ BH*L*S] + BH*L*(3S - 1)
    NB: a causal mask is counted as the full L*S product, as PyTorch's FlopCounterMode does: the kernels skip
    part of it, but by how much depends on the backend.
    """
    bh = math.prod(q.shape[:-2])
    lq, e = q.shape[-2], q.shape[-1]
    s, ev = k.shape[-2], v.shape[-1]
    scores = bh * lq * s
    elementwise = scores * (2 if masked else 1) + bh * lq * (3 * s - 1)
    flops = scores * e + bh * lq * ev * s + elementwise
    madd = scores * (2 * e - 1) + bh * lq * ev * (2 * s - 1) + elementwise
    return madd, flops


@register_formula(*_ops("scaled_dot_product_attention"))
def sdpa_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """F.scaled_dot_product_attention; see :func:`attention_cost`."""
    q, k, v = args[:3]
    masked = arg(args, kwargs, 3, "attn_mask") is not None
    madd, flops = attention_cost(q, k, v, masked)
    return io_cost(args, out, kwargs, madd, flops)


@register_formula(
    *_ops(
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
        "_flash_attention_forward",
        "_efficient_attention_forward",
    )
)
def sdpa_backend_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """The backend kernels of scaled dot-product attention (flash, efficient, cuDNN, CPU flash).

    Same math as :func:`attention_cost`; a mask counts when any tensor argument beyond q, k, v is given.
    MemWrite counts only the attention output, not the kernels' logsumexp scratch.
    """
    q, k, v = args[:3]
    masked = len(specs_in(args[3:], kwargs)) > 0
    madd, flops = attention_cost(q, k, v, masked)
    read = sum(s.nbytes for s in specs_in(args, kwargs))
    return Cost(madd, flops, read, _first(out).nbytes)


# --------------------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------------------


@register_formula(*_ops("batch_norm", "native_batch_norm", "_native_batch_norm_legit_no_training",
                        "_native_batch_norm_legit", "cudnn_batch_norm", "miopen_batch_norm"))
def batch_norm_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Batch norm (torchstat's BatchNorm2d, any rank): n = input elements, C channels.

    Normalizing: MAdd = 4n (subtract mean, divide by std, multiply gamma, add beta);  Flops = n, 2n when affine;
    MemRead = (n + 2C) bytes (running statistics not counted, as torchstat);  MemWrite = n bytes.
    In training mode the batch's statistics are computed first, and the running ones updated when the layer keeps
    them; both add to MAdd and Flops alike:
        mean: n adds and C divides;  variance: n subtractions, n squares, n adds and C divides;
        running mean (1 - m)·r + m·mean: 3C;  running variance, with the unbiased factor n / (n - 1): 4C;
    so 4n + 2C, and 7C more with running statistics; MemRead adds the running statistics (2C) and MemWrite the
    statistics saved for the backward (2C) and the running ones (2C).
    """
    x, weight = args[0], arg(args, kwargs, 1, "weight")
    channels = x.shape[1] if len(x.shape) > 1 else 1
    n, s = x.numel, x.itemsize
    flops = n * (2 if weight is not None else 1)
    madd, read, write = 4 * n, (n + 2 * channels) * s, n * s
    # the training flag is the first bool after (input, weight, bias): _native_batch_norm_legit.no_stats has no
    # running statistics before it, and _native_batch_norm_legit_no_training has no flag at all
    training = next((a for a in args[3:6] if isinstance(a, bool)), False)
    if training:
        running = isinstance(args[3], TensorSpec)
        extra = 4 * n + 2 * channels + (7 * channels if running else 0)
        flops, madd = flops + extra, madd + extra
        read += 2 * channels * s if running else 0
        write += (4 if running else 2) * channels * s
    return Cost(madd, flops, read, write)


def norm_formula(stats_ops: int, weight_index: int, bias_index: int | None) -> Formula:
    """Norms that compute their statistics from the input (layer, group, instance, RMS).

    Flops = MAdd = n * (stats_ops + [weight] + [bias]) where n = input elements; stats_ops is 4 for
    mean/variance norms (mean, variance, subtract, divide) and 3 for RMS norm (square, mean, scale).
    MemRead = (input + weight + bias) bytes;  MemWrite = output bytes.
    """

    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        x = args[0]
        affine = int(arg(args, kwargs, weight_index, "weight") is not None)
        if bias_index is not None:
            affine += int(arg(args, kwargs, bias_index, "bias") is not None)
        ops = x.numel * (stats_ops + affine)
        return Cost(ops, ops, sum(s.nbytes for s in specs_in(args, kwargs)), _first(out).nbytes)

    formula.__doc__ = norm_formula.__doc__
    return formula


register_formula(*_ops("layer_norm", "native_layer_norm", "group_norm"))(norm_formula(4, 2, 3))
register_formula(*_ops("native_group_norm"))(norm_formula(4, 1, 2))
register_formula(*_ops("instance_norm"))(norm_formula(4, 1, 2))
register_formula(*_ops("rms_norm", "_fused_rms_norm"))(norm_formula(3, 2, None))


@register_formula(*_ops("_weight_norm_interface"))
def weight_norm_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Weight normalisation w = g * v / ||v|| (norms over every dimension but ``dim``): n = v's elements,
    C = g's elements (one norm each).

    Flops = MAdd = n (squares summed) + C (square roots) + n (divide) + n (multiply by g) = 3n + C.
    MemRead = v + g bytes; MemWrite = w + the norms' bytes.
    """
    v, g = args[0], args[1]
    ops = 3 * v.numel + g.numel
    return io_cost(args[:2], out, None, ops, ops)


@register_formula(*_ops("_weight_norm_interface_backward"))
def weight_norm_backward_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """The gradients of w = g * v / ||v||, from grad_w (n elements), v, g and the norms (C each): with s = g / ||v||,
    grad_g = sum(grad_w * v) / ||v|| (n multiplies, n adds, C divides) and
    grad_v = s * (grad_w - (grad_g / ||v||) * v) (3n, and 2C for the per-channel factors).

    Flops = MAdd = 5n + 3C.  MemRead = every input; MemWrite = both gradients.
    """
    n, c = args[0].numel, args[2].numel
    ops = 5 * n + 3 * c
    return io_cost(args[:4], out, None, ops, ops)


# --------------------------------------------------------------------------------------------------------------
# Elementwise, activations, softmax, reductions
# --------------------------------------------------------------------------------------------------------------


def elementwise_formula(ops_per_element: int = 1) -> Formula:
    """Elementwise ops: Flops = MAdd = ops_per_element * output elements (torchstat's ReLU: n).

    MemRead = every tensor operand's bytes; MemWrite = output bytes.
    """

    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        n = ops_per_element * sum(s.numel for s in specs_in(out))
        return io_cost(args, out, kwargs, n, n)

    formula.__doc__ = elementwise_formula.__doc__
    return formula


_UNARY = (
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu", "gelu_", "silu", "silu_", "sigmoid", "sigmoid_",
    "tanh", "tanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "elu", "elu_", "leaky_relu",
    "leaky_relu_", "prelu", "_prelu_kernel", "rrelu", "celu", "celu_", "selu", "selu_", "softplus", "softshrink",
    "hardshrink", "mish", "mish_", "log_sigmoid_forward", "threshold", "threshold_", "glu",
    "exp", "exp_", "exp2", "expm1", "log", "log_", "log2", "log10", "log1p", "sqrt", "sqrt_", "rsqrt", "rsqrt_",
    "neg", "neg_", "abs", "abs_", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "erf", "erfc",
    "erfinv", "reciprocal", "reciprocal_", "square", "sign", "sgn", "floor", "ceil", "round", "trunc", "frac",
    "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "clip", "clip_", "logical_not",
    "bitwise_not", "isnan", "isinf", "isfinite", "nan_to_num", "logit", "heaviside", "positive", "signbit",
)
_BINARY = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "true_divide", "floor_divide",
    "remainder", "fmod", "pow", "pow_", "float_power", "maximum", "minimum", "fmax", "fmin", "atan2", "hypot",
    "copysign", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "bitwise_and",
    "bitwise_and_", "bitwise_or", "bitwise_or_", "bitwise_xor", "bitwise_xor_", "logical_and_", "logical_or_",
    "bitwise_left_shift", "bitwise_right_shift", "where", "masked_fill",
    "masked_fill_", "xlogy", "isclose", "ldexp", "lerp", "lerp_",
)
register_formula(*_ops(*_UNARY, *_BINARY))(elementwise_formula(1))
register_formula(*_ops("addcmul", "addcmul_", "addcdiv", "addcdiv_"))(elementwise_formula(2))
# polar(abs, angle) = abs · cos(angle) + i · abs · sin(angle): a cosine, a sine and two products per (complex) output
register_formula(*_ops("polar"))(elementwise_formula(4))


@register_formula(*_ops("softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax"))
def softmax_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Softmax / log-softmax along ``dim``: rows = n / L where L = size of ``dim``.

    MAdd = Flops = rows * (3L - 1)   (L exponentials, L - 1 additions, L divisions per row).
    torchstat's Softmax ignores ``dim`` and gives 3n - 1 per sample; this is the same for a 2-D input.
    """
    x = args[0]
    dim = arg(args, kwargs, 1, "dim", -1)
    length = x.shape[dim] if x.shape else 1
    rows = x.numel // max(length, 1)
    ops = rows * (3 * length - 1)
    return io_cost(args, out, kwargs, ops, ops)


@register_formula(
    *_ops(
        "sum", "mean", "nansum", "nanmean", "amax", "amin", "max", "min", "aminmax", "prod", "var", "std",
        "var_mean", "std_mean", "argmax", "argmin", "norm", "linalg_vector_norm", "logsumexp", "cumsum",
        "cumsum_", "cumprod", "logcumsumexp", "all", "any", "count_nonzero", "topk", "sort", "argsort",
        "median", "nanmedian", "mode", "kthvalue", "cummax", "cummin", "_cdist_forward", "frobenius_norm",
        "histc", "bincount",
    )
)
def reduction_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Reductions, scans, selections and histograms: Flops = MAdd = input elements (one step per element read;
    a histogram finds each element's bin and adds one)."""
    x = args[0]
    return io_cost(args, out, kwargs, x.numel, x.numel)


# --------------------------------------------------------------------------------------------------------------
# Pooling and resampling
# --------------------------------------------------------------------------------------------------------------


def _kernel_volume(kernel: Any, dims: int) -> int:
    sizes = list(kernel) if isinstance(kernel, list | tuple) else [kernel]
    if len(sizes) == 1:
        sizes = sizes * dims
    return math.prod(int(s) for s in sizes)


def pool_formula(dims: int, is_max: bool) -> Formula:
    """Max and average pooling (torchstat's MaxPool2d / AvgPool2d, any dimension).

    K = kernel volume:  max MAdd = (K - 1) * output elements;  avg MAdd = K * output elements;
    Flops = input elements (torchstat);  MemRead = input bytes;  MemWrite = output bytes (indices not counted).
    """

    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        x, o = args[0], _first(out)
        k = _kernel_volume(arg(args, kwargs, 1, "kernel_size"), dims)
        madd = (k - 1) * o.numel if is_max else k * o.numel
        return Cost(madd, x.numel, x.nbytes, o.nbytes)

    formula.__doc__ = pool_formula.__doc__
    return formula


for _dims in (1, 2, 3):
    register_formula(*_ops(f"max_pool{_dims}d", f"max_pool{_dims}d_with_indices",
                           *([f"mkldnn_max_pool{_dims}d"] if _dims > 1 else [])))(
        pool_formula(_dims, True)
    )
    register_formula(*_ops(f"avg_pool{_dims}d"))(pool_formula(_dims, False))


def adaptive_window_sum(in_size: int, out_size: int) -> int:
    """Sum of the window lengths adaptive pooling uses along one dimension.

    Window i spans [floor(i*in/out), ceil((i+1)*in/out)), PyTorch's rule.
    """
    return sum(-(-(i + 1) * in_size // out_size) - (i * in_size // out_size) for i in range(out_size))


def adaptive_pool_formula(dims: int, is_max: bool) -> Formula:
    """Adaptive pooling, exact: W = prod over dimensions of the summed window lengths, P = planes (N*C).

    avg MAdd = P*W (additions plus one division per output);  max MAdd = P*W - outputs;
    Flops = input elements (as torchstat's pooling);  MemRead = input bytes;  MemWrite = output bytes.
    """

    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        x, o = args[0], _first(out)
        in_sizes, out_sizes = x.shape[-dims:], o.shape[-dims:]
        planes = math.prod(x.shape[:-dims])
        windows = planes * math.prod(adaptive_window_sum(i, j) for i, j in zip(in_sizes, out_sizes, strict=True))
        madd = windows - o.numel if is_max else windows
        return Cost(madd, x.numel, x.nbytes, o.nbytes)

    formula.__doc__ = adaptive_pool_formula.__doc__
    return formula


for _dims in (1, 2, 3):
    register_formula(*_ops(f"adaptive_avg_pool{_dims}d", *([f"_adaptive_avg_pool{_dims}d"] if _dims > 1 else [])))(
        adaptive_pool_formula(_dims, False)
    )
    register_formula(*_ops(f"adaptive_max_pool{_dims}d"))(adaptive_pool_formula(_dims, True))


def upsample_formula(taps: int) -> Formula:
    """Interpolation: each output element mixes ``taps`` inputs (nearest 1, linear 2, bilinear 4, trilinear 8,
    bicubic 16).

    Flops = taps * output elements; MAdd = (2*taps - 1) * output elements.
    torchstat's Upsample Flops (nearest) drop the channel count; here every output element counts.
    """

    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        n = _first(out).numel
        return io_cost(args[:1], out, None, (2 * taps - 1) * n, taps * n)

    formula.__doc__ = upsample_formula.__doc__
    return formula


register_formula(*_ops("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
                       "_upsample_nearest_exact2d", "_upsample_nearest_exact3d"))(upsample_formula(1))
register_formula(*_ops("upsample_linear1d"))(upsample_formula(2))
register_formula(*_ops("upsample_bilinear2d", "_upsample_bilinear2d_aa"))(upsample_formula(4))
register_formula(*_ops("upsample_trilinear3d"))(upsample_formula(8))
register_formula(*_ops("upsample_bicubic2d", "_upsample_bicubic2d_aa"))(upsample_formula(16))
register_formula(*_ops("grid_sampler_2d"))(upsample_formula(4))


# --------------------------------------------------------------------------------------------------------------
# Lookups, data movement, dropout
# --------------------------------------------------------------------------------------------------------------


@register_formula(*_ops("embedding"))
def embedding_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Embedding lookup: no arithmetic.  MemRead = indices + the rows gathered (= output bytes);
    MemWrite = output bytes.  NB: only the rows looked up are read, not the whole table."""
    indices, o = args[1], _first(out)
    return Cost(0, 0, indices.nbytes + o.nbytes, o.nbytes)


@register_formula(
    *_ops(
        "cat", "stack", "hstack", "vstack", "index_select", "gather", "scatter", "scatter_", "scatter_add",
        "index", "_unsafe_index", "index_put", "index_put_", "constant_pad_nd", "reflection_pad1d",
        "reflection_pad2d", "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d",
        "repeat", "repeat_interleave", "flip", "roll", "tril", "triu", "masked_select", "narrow_copy",
        "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "new_zeros", "new_ones", "new_full",
        "arange", "rand", "randn", "randint", "rand_like", "randn_like", "randint_like", "scalar_tensor",
        "tensor", "linspace", "eye", "pixel_shuffle", "pixel_unshuffle", "im2col", "col2im", "nonzero",
        "one_hot", "bernoulli", "bernoulli_", "multinomial", "select_scatter", "slice_scatter", "uniform_",
        "normal_", "random_", "exponential_", "geometric_", "log_normal_", "cauchy_",
        "diag_embed", "channel_shuffle", "native_channel_shuffle", "clone", "copy", "copy_", "_to_copy",
        "fill", "fill_", "zero_", "select_backward", "slice_backward", "index_select_backward", "index_add",
        "index_add_", "index_copy", "scatter_reduce", "_unsafe_index_put", "masked_scatter", "new_empty_strided",
        "as_strided_scatter", "diagonal_backward", "unfold_backward", "_index_put_impl_", "scatter_add_",
        "scatter_reduce_", "index_copy_", "masked_scatter_",
    )
)
def data_movement_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Ops that only move or create data: no arithmetic; MemRead = tensor inputs; MemWrite = outputs."""
    return io_cost(args, out, kwargs)


@register_formula(*_ops("_foreach_copy_", "_foreach_copy"))
def foreach_copy_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """``_foreach_copy_(self, src)``: each tensor of ``src`` copied into its place in ``self`` (FSDP2 copies a
    mixed-precision unit's shards so): no arithmetic; MemRead = the sources; MemWrite = the destinations."""
    return Cost(0, 0, sum(x.nbytes for x in specs_in(args[1])), sum(x.nbytes for x in specs_in(args[0])))


@register_formula(*_ops("dropout", "native_dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"))
def dropout_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Dropout: in eval mode (how modelprof profiles) it is the identity and costs nothing;
    in training it draws and applies a mask: Flops = MAdd = n."""
    if not arg(args, kwargs, 2, "train", False):
        return Cost()
    n = args[0].numel
    return io_cost(args[:1], _first(out), None, n, n)


# --------------------------------------------------------------------------------------------------------------
# Recurrent layers
# --------------------------------------------------------------------------------------------------------------


def rnn_cell_flops(kind: str, input_size: int, hidden: int, bias: bool) -> int:
    """Multiply-accumulates of one cell step for one sample (thop's ``_count_*_cell`` formulas).

    RNN:  H*(I + H) + H [+ 2H bias]
    GRU:  3 * (H*(I + H) + H [+ 2H]) + H (r * ...) + 3H (h' = (1 - z) * n + z * h)
    LSTM: 4 * (H*(I + H) + H [+ 2H]) + 3H (c' = f*c + i*g) + H (h' = o * tanh(c'))
    """
    gate = hidden * (input_size + hidden) + hidden + (2 * hidden if bias else 0)
    if kind == "lstm":
        return 4 * gate + 4 * hidden
    if kind == "gru":
        return 3 * gate + 4 * hidden
    return gate


def rnn_formula(kind: str) -> Formula:
    """aten.lstm / gru / rnn_tanh / rnn_relu over a whole sequence and every layer and direction.

    Flops = T * N * sum over layers and directions of :func:`rnn_cell_flops`;  MAdd = 2 * Flops
    (NB: the cell's elementwise ops are counted once in Flops and twice in MAdd, like its products).
    MemRead = input + initial states + all weights;  MemWrite = outputs and final states.
    """

    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        x, hx, params = args[0], args[1], args[2]
        has_bias, layers, bidirectional, batch_first = args[3], args[4], args[7], args[8]
        h0 = hx[0] if isinstance(hx, list | tuple) else hx
        hidden = h0.shape[-1]
        directions = 2 if bidirectional else 1
        if len(x.shape) == 2:  # unbatched (T, I)
            steps, batch = x.shape[0], 1
        else:
            steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
        # weight_ih of layer l is params[l * directions * (4 if bias else 2)], shape (G*H, I_l)
        stride = 4 if has_bias else 2
        per_step = 0
        for layer in range(layers):
            w_ih = params[layer * directions * stride]
            per_step += directions * rnn_cell_flops(kind, w_ih.shape[1], hidden, bool(has_bias))
        flops = steps * batch * per_step
        return io_cost([x, hx, params], out, None, 2 * flops, flops)

    formula.__doc__ = rnn_formula.__doc__
    return formula


#: The RNN mode numbers of cuDNN and oneDNN's layer ops (``mode``): RNN_RELU, RNN_TANH, LSTM, GRU.
_RNN_MODES = {0: "rnn", 1: "rnn", 2: "lstm", 3: "gru"}


def _rnn_layer(kind: str, x: TensorSpec, w_ih: TensorSpec, hidden: int, has_bias: bool,
               batch_first: bool) -> tuple[int, int]:
    """(products, elementwise ops) of one recurrent layer in one direction over the whole sequence."""
    steps, batch = (x.shape[1], x.shape[0]) if batch_first and len(x.shape) == 3 else (x.shape[0], (
        x.shape[1] if len(x.shape) == 3 else 1))
    gates = w_ih.shape[0]
    products = gates * (w_ih.shape[1] + hidden)
    cell = rnn_cell_flops(kind, w_ih.shape[1], hidden, has_bias)
    return steps * batch * products, steps * batch * (cell - products)


@register_formula(*_ops("mkldnn_rnn_layer"))
def rnn_layer_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """oneDNN's one-layer, one-direction recurrent op (what ``nn.LSTM`` runs on CPU with autograd on): the same
    count as :func:`rnn_formula` for that layer (input, weight_ih, weight_hh, biases, h0, c0, reverse, batch_sizes,
    mode, hidden_size, layers, has_biases, bidirectional, batch_first).

    Flops = T * N * rnn_cell_flops;  MAdd = 2 * Flops.  Memory: every tensor in and out.
    """
    x, w_ih = args[0], args[1]
    kind, hidden, has_bias, batch_first = _RNN_MODES.get(args[9], "lstm"), args[10], bool(args[12]), bool(args[14])
    products, elementwise = _rnn_layer(kind, x, w_ih, hidden, has_bias, batch_first)
    flops = products + elementwise
    return io_cost(args[:7], out, None, 2 * flops, flops)


@register_formula(*_ops("mkldnn_rnn_layer_backward"))
def rnn_layer_backward_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """The gradients of one recurrent layer: every product's gradient with respect to both its operands (the input
    and hidden state, and the weights), as a linear layer's backward counts, and the cell's elementwise gradients
    once, as its forward counts them: Flops = 2 * products + elementwise;  MAdd = 2 * Flops.
    Memory: every tensor in and out."""
    x, w_ih = args[0], args[1]
    kind, hidden = _RNN_MODES.get(args[14], "lstm"), args[15]
    has_bias, batch_first = bool(args[17]), bool(args[21])
    products, elementwise = _rnn_layer(kind, x, w_ih, hidden, has_bias, batch_first)
    flops = 2 * products + elementwise
    return io_cost(args[:13], out, None, 2 * flops, flops)


register_formula(*_ops("lstm"))(rnn_formula("lstm"))
register_formula(*_ops("gru"))(rnn_formula("gru"))
register_formula(*_ops("rnn_tanh", "rnn_relu"))(rnn_formula("rnn"))


# --------------------------------------------------------------------------------------------------------------
# Backward ops (stats --train): the kernels autograd runs for the layers above
# --------------------------------------------------------------------------------------------------------------


@register_formula(*_ops("convolution_backward"))
def conv_backward_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Gradients of a convolution: grad_output (N, Co, *out), input, weight; ``output_mask`` says which of
    (grad_input, grad_weight, grad_bias) are computed.

    Each of grad_input and grad_weight is a convolution with the forward's multiply-accumulates,
    P = N*Co*prod(out_spatial) * K*Ci/g (PyTorch's FlopCounterMode counts the same); grad_bias sums grad_output:
        Flops = mask_i*P + mask_w*P + mask_b*grad_output;
        MAdd  = mask_i*(2P - input) + mask_w*(2P - weight) + mask_b*grad_output.
    """
    grad, x, w = args[0], args[1], args[2]
    transposed = bool(arg(args, kwargs, 7, "transposed", False))
    mask = arg(args, kwargs, 10, "output_mask", [True, True, True])
    k = math.prod(w.shape[2:])
    if transposed:  # the forward scattered every input element into K*Co/g outputs
        products = x.numel * k * w.shape[1]
    else:
        products = grad.numel * k * w.shape[1]
    flops = madd = 0
    if mask[0]:
        flops, madd = flops + products, madd + 2 * products - x.numel
    if mask[1]:
        flops, madd = flops + products, madd + 2 * products - w.numel
    if len(mask) > 2 and mask[2]:
        flops, madd = flops + grad.numel, madd + grad.numel
    return io_cost(args[:3], out, None, madd, flops)


@register_formula(
    *_ops(
        "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention_backward",
        "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention_backward",
        "_flash_attention_backward", "_efficient_attention_backward",
        "_scaled_dot_product_fused_attention_overrideable_backward",
    )
)
def sdpa_backward_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Backward of scaled dot-product attention: grad_out (..., L, Ev), q (..., L, E), k (..., S, E), v (..., S, Ev).

    Five products, as FlopCounterMode counts them: the scores recomputed (L*S*E), dP = dO @ V^T (L*S*Ev),
    dV = P^T @ dO (S*L*Ev), dQ = dS @ K (L*S*E), dK = dS^T @ Q (S*L*E), then the softmax's gradient, 4 per score:
        Flops = BH*L*S*(3E + 2Ev) + 4*BH*L*S;  MAdd = 2 * product MACs - outputs of the products + 4*BH*L*S.
    """
    grad, q, k, v = args[0], args[1], args[2], args[3]
    bh = math.prod(q.shape[:-2])
    lq, e = q.shape[-2], q.shape[-1]
    s, ev = k.shape[-2], v.shape[-1]
    scores = bh * lq * s
    products = scores * (3 * e + 2 * ev)
    outputs = 2 * scores + bh * s * ev + bh * lq * e + bh * s * e  # P, dP, dV, dQ, dK
    return io_cost([grad, q, k, v], out, None, 2 * products - outputs + 4 * scores, products + 4 * scores)


def _scaled_elementwise(ops_per_element: int, index: int = 0) -> Formula:
    """Flops = MAdd = ops_per_element * elements of argument ``index``; memory: every tensor in and out."""

    def formula(args: tuple, kwargs: dict, out: Any) -> Cost:
        n = ops_per_element * args[index].numel
        return io_cost(args, out, kwargs, n, n)

    formula.__doc__ = f"Flops = MAdd = {ops_per_element} per element of the gradient."
    return formula


#: Activation gradients: one op per element, as their forwards count (torchstat's ReLU convention).
register_formula(*_ops(
    "threshold_backward", "gelu_backward", "silu_backward", "tanh_backward", "sigmoid_backward",
    "hardswish_backward", "hardsigmoid_backward", "elu_backward", "leaky_relu_backward", "softplus_backward",
    "hardtanh_backward", "mish_backward", "log_sigmoid_backward", "glu_backward", "_prelu_kernel_backward",
    "softshrink_backward", "hardshrink_backward", "rrelu_with_noise_backward",
))(_scaled_elementwise(1))
#: Norm gradients: two reductions (sum dy, sum dy*x_hat) and an affine combination per element, 5 ops per
#: element of the input (grad_weight and grad_bias reuse the reductions).
register_formula(*_ops(
    "native_batch_norm_backward", "batch_norm_backward",
    "cudnn_batch_norm_backward", "miopen_batch_norm_backward", "native_layer_norm_backward",
    "native_group_norm_backward", "_fused_rms_norm_backward",
))(_scaled_elementwise(5, index=1))
#: Softmax gradients: y * (dy - sum(dy * y)) and dy - exp(y) * sum(dy): 4 ops per element.
register_formula(*_ops("_softmax_backward_data", "_log_softmax_backward_data"))(_scaled_elementwise(4))
#: Dropout's gradient: the mask and the scale, 2 ops per element.
register_formula(*_ops("native_dropout_backward"))(_scaled_elementwise(2))
#: Losses and their gradients: one op per element of the input.
register_formula(*_ops(
    "nll_loss_forward", "nll_loss_backward", "nll_loss2d_forward", "nll_loss2d_backward", "mse_loss",
    "mse_loss_backward", "l1_loss", "smooth_l1_loss", "smooth_l1_loss_backward", "huber_loss",
    "huber_loss_backward", "binary_cross_entropy", "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits",
))(_scaled_elementwise(1))


@register_formula(*_ops("embedding_dense_backward", "embedding_backward"))
def embedding_backward_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """The table's gradient: each looked-up row's gradient added into it, one addition per element of
    grad_output.  MemRead = grad_output + indices; MemWrite = the whole gradient table."""
    grad = args[0]
    return io_cost(args[:2], out, None, grad.numel, grad.numel)


@register_formula(
    *_ops(
        "max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward",
        "adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward", "_adaptive_avg_pool2d_backward",
        "_adaptive_avg_pool3d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
        "upsample_nearest1d_backward", "upsample_nearest2d_backward", "upsample_nearest3d_backward",
        "upsample_linear1d_backward", "upsample_bilinear2d_backward", "upsample_trilinear3d_backward",
        "upsample_bicubic2d_backward", "_upsample_nearest_exact2d_backward", "reflection_pad1d_backward",
        "reflection_pad2d_backward", "reflection_pad3d_backward", "replication_pad1d_backward",
        "replication_pad2d_backward", "replication_pad3d_backward", "grid_sampler_2d_backward",
    )
)
def scatter_backward_formula(args: tuple, kwargs: dict, out: Any) -> Cost:
    """Gradients that scatter grad_output back onto the input (pooling, resampling, padding): one addition per
    element of grad_output.  MemRead = every tensor argument; MemWrite = the input's gradient."""
    grad = args[0]
    return io_cost(args, out, kwargs, grad.numel, grad.numel)


def _first_argument_moved(args: tuple, kwargs: dict, out: Any) -> Cost:
    """A copy whose first argument (a tensor or a list of them) is read and the same bytes written elsewhere."""
    moved = sum(x.nbytes for x in specs_in(args[0]))
    return Cost(0, 0, moved, moved)


def _nothing(args: tuple, kwargs: dict, out: Any) -> Cost:
    return Cost(0, 0, 0, 0)


def register_distributed_formulas() -> None:
    """The ops that exist once FSDP2 and DTensor are imported. FSDP2's own copy ops (``torch.ops.fsdp``):
    all_gather_copy_in copies the shards into the all-gather's input, split_with_sizes_copy the gathered buffer out
    to the parameters, chunk_cat the gradients into the reduce-scatter's input; each moves its first argument's
    bytes, with no arithmetic. DTensor's ``_c10d_functional._wrap_tensor_autograd`` wraps a collective's result for
    autograd and costs nothing."""
    import torch.distributed._functional_collectives  # noqa: F401  (defines _wrap_tensor_autograd)
    import torch.distributed.fsdp  # noqa: F401  (defines torch.ops.fsdp)

    for namespace, name, formula in (("fsdp", "all_gather_copy_in", _first_argument_moved),
                                     ("fsdp", "split_with_sizes_copy", _first_argument_moved),
                                     ("fsdp", "chunk_cat", _first_argument_moved),
                                     ("_c10d_functional", "_wrap_tensor_autograd", _nothing)):
        try:
            packet = getattr(getattr(torch.ops, namespace), name)
        except (AttributeError, RuntimeError):
            continue
        FORMULAS.setdefault(packet, formula)

