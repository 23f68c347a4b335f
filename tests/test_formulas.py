"""One hand-arithmetic test per formula. Each expected number is worked out in the comment beside it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import modelprof
from modelprof.counting.formulas import (
    FORMULAS,
    REQUESTED_OP_NAMES,
    Cost,
    TensorSpec,
    adaptive_window_sum,
    register_formula,
)


def only_row(model, *args, **kwargs):
    report = modelprof.profile(model, *args, **kwargs)
    assert len(report.layers) == 1, report.layers
    assert not report.unsupported
    return report.layers[0]


class Fn(nn.Module):
    """A root module whose forward is one functional call: its cost lands on the (root) row."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def test_worked_example_conv():
    row = modelprof.profile(nn.Conv2d(3, 2, 7, 2, 3, bias=False), torch.randn(1, 3, 500, 500)).total
    assert row.flops == 250 * 250 * 3 * 2 * 7 * 7 == 18_375_000
    assert row.madd == (250 * 250 * 2) * ((7 * 7 * 3) + (7 * 7 * 3 - 1)) == 36_625_000
    assert row.mem_read == ((500 * 500 * 3) + (7 * 7 * 3 * 2)) * 4 == 3_001_176
    assert row.mem_write == 250 * 250 * 2 * 4 == 500_000


def test_conv_bias_groups_and_batch():
    # Conv2d(4, 6, k3, groups=2, bias) on 2x4x5x5 -> 2x6x3x3 = 108 outputs, K*Ci/g = 9*2 = 18
    row = only_row(nn.Conv2d(4, 6, 3, groups=2), torch.randn(2, 4, 5, 5))
    assert row.flops == 108 * 18 + 108          # 2052: MACs + one bias add per output
    assert row.madd == 108 * (2 * 18 - 1 + 1)  # 3888
    assert row.mem_read == (2 * 4 * 25 + 6 * 2 * 9 + 6) * 4  # input + weight + bias, weights once per batch
    assert row.mem_write == 108 * 4


def test_conv1d_and_conv3d():
    # Conv1d(3, 4, k5) on 1x3x10 -> 1x4x6 = 24 outputs, K*Ci = 15
    assert only_row(nn.Conv1d(3, 4, 5, bias=False), torch.randn(1, 3, 10)).flops == 24 * 15
    # Conv3d(2, 3, k2) on 1x2x3x3x3 -> 1x3x2x2x2 = 24 outputs, K*Ci = 8*2 = 16
    assert only_row(nn.Conv3d(2, 3, 2, bias=False), torch.randn(1, 2, 3, 3, 3)).flops == 24 * 16


def test_conv_transpose():
    # ConvTranspose2d(3, 2, k3, s2) on 1x3x4x4 -> 1x2x9x9; each of 3*16 inputs feeds 9*2 outputs
    row = only_row(nn.ConvTranspose2d(3, 2, 3, stride=2, bias=False), torch.randn(1, 3, 4, 4))
    assert row.flops == 3 * 16 * 9 * 2                  # 864
    assert row.madd == 2 * 16 * (2 * 9 * 3 - 1)         # torchstat: Co*Hi*Wi*(2*K*Ci - 1) = 1696


def test_linear_nd_input():
    # Linear(5, 7) on 2x3x5: 6 rows; Flops = 6*5*7 = 210; MAdd = 6*7*(2*5-1) = 378
    row = only_row(nn.Linear(5, 7), torch.randn(2, 3, 5))
    assert (row.flops, row.madd) == (210, 378)
    assert row.mem_read == (30 + 35 + 7) * 4 and row.mem_write == 42 * 4


@pytest.mark.parametrize(
    ("fn", "shapes", "flops", "madd"),
    [
        (torch.mm, [(3, 4), (4, 5)], 3 * 5 * 4, 3 * 5 * 7),                    # 15 outputs, K = 4
        (torch.bmm, [(2, 3, 4), (2, 4, 5)], 30 * 4, 30 * 7),                  # 30 outputs
        (torch.matmul, [(2, 1, 3, 4), (5, 4, 6)], 2 * 5 * 3 * 6 * 4, 180 * 7),  # broadcast: 180 outputs
        (torch.matmul, [(4,), (4, 3)], 3 * 4, 3 * 7),                         # 1-D times 2-D
        (lambda a, b: a @ b, [(3, 4), (4,)], 3 * 4, 3 * 7),
        (lambda a, b: torch.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 5)], 30 * 4, 30 * 7),
    ],
)
def test_matrix_products(fn, shapes, flops, madd):
    row = modelprof.profile(Fn(fn), *(torch.randn(s) for s in shapes)).total
    assert (row.flops, row.madd) == (flops, madd)


def test_addmm_counts_the_added_matrix():
    # addmm(c[3x5], a[3x4], b[4x5]): 15 outputs, K=4 -> Flops 60, MAdd 15*7 + 15 = 120
    row = modelprof.profile(Fn(torch.addmm), torch.randn(3, 5), torch.randn(3, 4), torch.randn(4, 5)).total
    assert (row.flops, row.madd) == (60, 120)
    # baddbmm(c[2x3x5], a[2x3x4], b[2x4x5]): 30 outputs -> Flops 120, MAdd 30*7 + 30 = 240
    row = modelprof.profile(Fn(torch.baddbmm), torch.randn(2, 3, 5), torch.randn(2, 3, 4), torch.randn(2, 4, 5)).total
    assert (row.flops, row.madd) == (120, 240)


def test_sdpa_cpu_backend_is_counted():
    # q, k, v (1, 2, 5, 8): BH=2, L=S=5, E=Ev=8
    # Flops = 2*5*5*8 (QK) + 2*5*5*8 (AV) + 2*5*5 (scale) + 2*5*(3*5-1) (softmax) = 400+400+50+140 = 990
    # MAdd  = 50*(2*8-1) + 2*5*8*(2*5-1) + 50 + 140 = 750 + 720 + 190 = 1660
    q = torch.randn(1, 2, 5, 8)
    row = modelprof.profile(Fn(F.scaled_dot_product_attention), q, q, q).total
    assert (row.flops, row.madd) == (990, 1660)
    # With an additive mask one more op per score: 990 + 50
    mask = torch.zeros(5, 5)
    row = modelprof.profile(Fn(lambda a, m: F.scaled_dot_product_attention(a, a, a, attn_mask=m)), q, mask).total
    assert row.flops == 1040


def test_sdpa_grouped_query_heads():
    # q (1, 4, 3, 2), k/v (1, 2, 6, 2) with enable_gqa: BH = 4 query heads, L=3, S=6, E=Ev=2
    # Flops = 4*3*6*(2+2) + 4*3*6 + 4*3*(3*6-1) = 288 + 72 + 204 = 564
    q, kv = torch.randn(1, 4, 3, 2), torch.randn(1, 2, 6, 2)
    fn = Fn(lambda a, b: F.scaled_dot_product_attention(a, b, b, enable_gqa=True))
    assert modelprof.profile(fn, q, kv).total.flops == 564


def test_batch_norm_matches_worked_example():
    # BatchNorm2d(2) on 1x2x250x250: n = 125000; MAdd 4n, Flops 2n (affine), MemRead (n + 2C)*4
    row = only_row(nn.BatchNorm2d(2), torch.randn(1, 2, 250, 250))
    assert (row.madd, row.flops, row.mem_read, row.mem_write) == (500_000, 250_000, 500_016, 500_000)
    row = only_row(nn.BatchNorm2d(2, affine=False), torch.randn(1, 2, 250, 250))
    assert row.flops == 125_000


@pytest.mark.parametrize(
    ("layer", "shape", "per_element"),
    [
        (nn.LayerNorm(6), (2, 3, 6), 4 + 2),                       # mean, var, sub, div + weight + bias
        (nn.LayerNorm(6, elementwise_affine=False), (2, 3, 6), 4),
        (nn.GroupNorm(2, 4), (2, 4, 3, 3), 6),
        (nn.InstanceNorm2d(4), (2, 4, 3, 3), 4),                   # no affine by default
        (nn.RMSNorm(6), (2, 3, 6), 3 + 1),                         # square, mean, scale + weight
    ],
)
def test_norms(layer, shape, per_element):
    n = torch.Size(shape).numel()
    row = only_row(layer, torch.randn(shape))
    assert row.flops == row.madd == n * per_element


@pytest.mark.parametrize(
    "layer",
    [nn.ReLU(), nn.ReLU6(), nn.GELU(), nn.SiLU(), nn.Sigmoid(), nn.Tanh(), nn.Hardswish(), nn.ELU(),
     nn.LeakyReLU(), nn.PReLU()],
)
def test_activations_one_op_per_element(layer):
    # 2x3x4 = 24 elements: MAdd = Flops = 24 (torchstat's ReLU); MemRead = input (+ PReLU's one weight)
    row = only_row(layer, torch.randn(2, 3, 4))
    assert row.flops == row.madd == 24
    assert row.mem_read == (24 + sum(p.numel() for p in layer.parameters())) * 4


@pytest.mark.parametrize(("layer", "rows", "length"), [(nn.Softmax(dim=1), 2 * 4, 3), (nn.LogSoftmax(dim=-1), 6, 4)])
def test_softmax_respects_dim(layer, rows, length):
    # input 2x3x4: softmax over dim 1 -> 8 rows of 3; over -1 -> 6 rows of 4; MAdd = rows * (3L - 1)
    row = only_row(layer, torch.randn(2, 3, 4))
    assert row.madd == row.flops == rows * (3 * length - 1)


def test_pools():
    x = torch.randn(1, 2, 6, 6)
    # MaxPool2d(2): 2x3x3 = 18 outputs, MAdd = (4 - 1) * 18 = 54; Flops = input elements = 72
    row = only_row(nn.MaxPool2d(2), x)
    assert (row.madd, row.flops) == (54, 72)
    # AvgPool2d(3, stride=3): 2x2x2 = 8 outputs, MAdd = 9 * 8 = 72
    assert only_row(nn.AvgPool2d(3), x).madd == 72
    # MaxPool1d(3) on 1x2x9 -> 1x2x3: MAdd = (3 - 1) * 6 = 12
    assert only_row(nn.MaxPool1d(3), torch.randn(1, 2, 9)).madd == 12


def test_adaptive_pools_exact_windows():
    # 5 -> 3: windows [0,2) [1,4) [3,5) -> lengths 2 + 3 + 2 = 7
    assert adaptive_window_sum(5, 3) == 7
    # AdaptiveAvgPool2d(1) on 1x3x4x4: each of 3 planes sums 16 -> MAdd = 48
    assert only_row(nn.AdaptiveAvgPool2d(1), torch.randn(1, 3, 4, 4)).madd == 48
    # AdaptiveMaxPool2d(3) on 1x1x5x5: windows 7*7 = 49 elements, 9 outputs -> MAdd = 49 - 9 = 40
    assert only_row(nn.AdaptiveMaxPool2d(3), torch.randn(1, 1, 5, 5)).madd == 40


@pytest.mark.parametrize(("mode", "taps"), [("nearest", 1), ("bilinear", 4), ("bicubic", 16)])
def test_interpolate(mode, taps):
    # 1x3x4x4 -> 1x3x8x8 = 192 outputs: Flops = taps * 192, MAdd = (2*taps - 1) * 192
    fn = Fn(lambda x: F.interpolate(x, scale_factor=2, mode=mode))
    row = modelprof.profile(fn, torch.randn(1, 3, 4, 4)).total
    assert (row.flops, row.madd) == (taps * 192, (2 * taps - 1) * 192)


def test_upsample_module_counts_channels():
    # torchstat drops C: it would say 8*8 = 64 for one sample; every output element is 3*8*8 = 192
    assert only_row(nn.Upsample(scale_factor=2), torch.randn(1, 3, 4, 4)).flops == 192


def test_elementwise_and_reductions():
    a, b = torch.randn(2, 3), torch.randn(3)
    # a + b broadcasts to 6 outputs; reads 6 + 3 floats, writes 6
    row = modelprof.profile(Fn(torch.add), a, b).total
    assert (row.flops, row.madd, row.mem_read, row.mem_write) == (6, 6, 36, 24)
    # sum over 6 elements: one step per element read
    assert modelprof.profile(Fn(torch.sum), a).total.flops == 6
    # mean over dim 1 of 2x3
    assert modelprof.profile(Fn(lambda x: x.mean(dim=1)), a).total.flops == 6


def test_embedding_reads_only_looked_up_rows():
    # 2x3 int64 ids, dim 4: no arithmetic; reads 6 ids (48 B) + 6 rows (96 B), writes 96 B
    row = only_row(nn.Embedding(100, 4), torch.randint(0, 100, (2, 3)))
    assert (row.flops, row.madd, row.mem_read, row.mem_write) == (0, 0, 48 + 96, 96)


def test_dropout_is_identity_in_eval():
    row = only_row(nn.Dropout(0.5), torch.randn(4, 4))
    assert (row.flops, row.madd) == (0, 0)


def test_recurrent_layers_follow_thop_cells():
    # LSTM(I=3, H=4), T=5, N=2, 1 layer: gate = 4*(3+4) + 4 + 8 = 40; cell = 4*40 + 4*4 = 176
    row = only_row(nn.LSTM(3, 4, batch_first=True), torch.randn(2, 5, 3))
    assert row.flops == 5 * 2 * 176
    assert row.madd == 2 * row.flops
    # GRU(I=3, H=4) bidirectional, T=5, N=1: cell = 3*40 + 4*4 = 136, two directions
    assert only_row(nn.GRU(3, 4, bidirectional=True), torch.randn(5, 1, 3)).flops == 5 * 2 * 136
    # RNN(I=3, H=4) no bias: cell = 4*7 + 4 = 32, 2 layers (second layer I = 4): 32 + (4*8 + 4) = 68
    assert only_row(nn.RNN(3, 4, num_layers=2, bias=False), torch.randn(5, 1, 3)).flops == 5 * 68


def test_formula_is_pure_function_of_shapes():
    # The conv formula evaluated on specs alone, no tensors: the worked example again.
    conv = FORMULAS[torch.ops.aten.conv2d]
    x, w = TensorSpec((1, 3, 500, 500), 4), TensorSpec((2, 3, 7, 7), 4)
    assert conv((x, w, None, [2, 2], [3, 3]), {}, TensorSpec((1, 2, 250, 250), 4)) == Cost(
        36_625_000, 18_375_000, 3_001_176, 500_000
    )


def test_register_formula_refuses_duplicates_and_counts_custom_ops():
    with pytest.raises(ValueError, match="already registered"):
        register_formula(torch.ops.aten.conv2d)(lambda a, k, o: Cost())

    lib = torch.library.Library("modelproftest", "DEF")
    lib.define("double(Tensor x) -> Tensor")
    lib.impl("double", lambda x: x * 2, "CompositeExplicitAutograd")
    op = torch.ops.modelproftest.double
    report = modelprof.profile(Fn(op), torch.randn(3))
    assert report.unsupported == {"modelproftest.double": 1}

    table = dict(FORMULAS)  # a table of its own: the global registry is never edited by a test
    register_formula(op, table=table)(lambda args, kwargs, out: Cost(madd=3, flops=3))
    assert modelprof.count_costs(Fn(op), (torch.randn(3),), formulas=table).total.flops == 3
    assert op.default.overloadpacket not in FORMULAS


def test_every_op_name_in_the_registry_exists_in_this_torch():
    # a misspelt name would be dropped silently when the registry is built
    missing = sorted({n for n in REQUESTED_OP_NAMES if not hasattr(torch.ops.aten, n)})
    assert len(REQUESTED_OP_NAMES) > 300 and missing == []


def test_grouped_mm_counts_each_group_exactly():
    mm = torch.ops.aten._grouped_mm
    # experts: a (8 tokens, K 16) against b (3 experts, 16, 8), groups of 2, 2 and 4 rows -> out (8, 8)
    # Flops = 8*8*16 = 1024; MAdd = 8*8*(2*16 - 1) = 1984; MemRead (8*16 + 3*16*8 + 3 offsets int32)
    row = only_row(Fn(mm), torch.randn(8, 16), torch.randn(3, 16, 8), torch.tensor([2, 4, 8], dtype=torch.int32))
    assert (row.flops, row.madd) == (1024, 1984)
    assert row.mem_read == (8 * 16 + 3 * 16 * 8) * 4 + 3 * 4 and row.mem_write == 8 * 8 * 4
    # batched: (3, 8, 16) @ (3, 16, 8) -> (3, 8, 8): Flops = 192 * 16 = 3072; MAdd = 192 * 31 = 5952
    row = only_row(Fn(mm), torch.randn(3, 8, 16), torch.randn(3, 16, 8))
    assert (row.flops, row.madd) == (3072, 5952)
    # K split into groups of 4, 4 and 8: (8, 16) @ (16, 8) -> (3, 8, 8): Flops = 8*8*(4 + 4 + 8) = 1024;
    # MAdd = 8*8*(7 + 7 + 15) = 1856 = 2*1024 - 192
    row = only_row(Fn(mm), torch.randn(8, 16), torch.randn(8, 16).t(), torch.tensor([4, 8, 16], dtype=torch.int32))
    assert (row.flops, row.madd) == (1024, 1856)


def test_transformers_grouped_mm_fallback_and_its_backward():
    """transformers' grouped product (torch.export records it in place of _grouped_mm, as --pp's traced stages do),
    counted by name as _grouped_mm is: a (8, 16) @ b (3 experts, 16, 8), groups of 2, 2 and 4 rows -> (8, 8):
    Flops = 8*8*16 = 1024, MAdd = 8*8*31 = 1984. Its backward, given g (8, 8): the input's gradient, 8*16 dot
    products of length 8, and the weights', 3*16*8 dot products over 2, 2 and 4 rows: Flops = 2*8*16*8 = 2048;
    MAdd = 8*16*(2*8 - 1) + (2*8*16*8 - 3*16*8) = 1920 + 1664 = 3584."""
    import sys
    import types

    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    pytest.importorskip("transformers.integrations.moe")
    a, b, offs = torch.randn(8, 16), torch.randn(3, 16, 8), torch.tensor([2, 4, 8])
    row = only_row(Fn(torch.ops.transformers.grouped_mm_fallback), a, b, offs)
    assert (row.flops, row.madd) == (1024, 1984)
    row = only_row(Fn(torch.ops.transformers.grouped_mm_fallback_backward), a, b, offs, torch.randn(8, 8))
    assert (row.flops, row.madd) == (2048, 3584)
    # reads a, b, the offsets (int64) and g; writes the two gradients
    assert row.mem_read == (8 * 16 + 3 * 16 * 8 + 8 * 8) * 4 + 3 * 8 and row.mem_write == (8 * 16 + 3 * 16 * 8) * 4


def test_weight_norm_and_histogram():
    # v (4, 3, 2) normalised per output channel, g (4, 1, 1): n = 24, C = 4 -> 3*24 + 4 = 76
    row = only_row(Fn(torch._weight_norm), torch.randn(4, 3, 2), torch.randn(4, 1, 1), 0)
    assert (row.flops, row.madd) == (76, 76)
    assert row.mem_read == (24 + 4) * 4 and row.mem_write == (24 + 4) * 4  # w and the 4 norms
    # histc over 10 elements into 4 bins: one step per element; reads 10 floats, writes 4
    row = only_row(Fn(lambda x: torch.histc(x, bins=4)), torch.randn(10))
    assert (row.flops, row.madd, row.mem_read, row.mem_write) == (10, 10, 40, 16)


def test_in_place_detach_is_free():
    row = only_row(Fn(lambda x: (x * 2).detach_()), torch.randn(5))
    assert row.ops == () and row.flops == 5  # the root's own row: mul counted, detach_ free


def test_in_place_bitwise_ops_and_random_fills_are_counted():
    # what detection losses run in a training step: an in-place bitwise and (one op per element: 2·3 = 6, its
    # 6 bool bytes written) and a random fill (no arithmetic, its 4·5 float32 = 80 bytes written)
    import modelprof

    class Masks(torch.nn.Module):
        def forward(self, a, b):
            noise = torch.empty(4, 5).uniform_()
            return a.bitwise_and_(b), noise

    report = modelprof.profile(Masks(), torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool))
    assert not report.unsupported
    assert report.total.flops == 6
    assert report.total.mem_write == 6 + 80


def test_foreach_copy():
    # torch._foreach_copy_ of a (4, 8) and a (2,) float32 pair: read 32·4 + 2·4 = 136 bytes, write the same
    def copy(a, b, c, d):
        torch._foreach_copy_([a, b], [c, d])
        return a

    row = only_row(Fn(copy), torch.zeros(4, 8), torch.zeros(2), torch.ones(4, 8), torch.ones(2))
    assert (row.flops, row.madd, row.mem_read, row.mem_write) == (0, 0, 136, 136)
