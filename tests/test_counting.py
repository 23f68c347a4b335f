"""The collector on whole models: references, attribution, rows adding up, and the model left untouched."""

import copy

import pytest
import torch
from fixtures import (
    CAPTION_SPECS,
    CaptionModel,
    Decoder,
    FunctionalOps,
    Recurrent,
    Shared,
    TinyTransformer,
    resnet18,
    resnet50,
)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import modelprof
from modelprof import SingleTensorAdapter
from modelprof.loading.build import build_inputs
from modelprof.metrics import KEYS
from modelprof.reports.stats import ROOT


def assert_rows_add_up(report):
    for key in KEYS:
        assert sum(getattr(r, key) for r in report.layers) == getattr(report.total, key), key


@pytest.mark.parametrize(
    ("factory", "macs", "params"),
    [(resnet18, 1_814_073_344, 11_689_512), (resnet50, 4_089_184_256, 25_557_032)],  # docs/counting.md references
)
def test_resnet_conv_and_linear_match_published_counts(factory, macs, params):
    model = factory()
    report = modelprof.profile(model, torch.randn(1, 3, 224, 224))
    assert sum(r.flops for r in report.layers if r.type in ("Conv2d", "Linear")) == macs
    assert report.total.params == params == sum(p.numel() for p in model.parameters())
    assert not report.unsupported
    assert_rows_add_up(report)
    # the residual adds run in the blocks' own forward: each block has a row of its own
    assert any(r.name == "layer1.0" and "add" in r.ops for r in report.layers)


def test_matmul_and_conv_agree_with_flop_counter_mode():
    # PyTorch's FlopCounterMode counts 2 x multiply-accumulates for mm/bmm/convolution
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 10, bias=False))
    x = torch.randn(2, 3, 8, 8)
    with FlopCounterMode(display=False) as counter:
        model(x)
    report = modelprof.profile(model, x)
    conv_bias = 2 * 8 * 6 * 6  # modelprof also counts Conv2d's bias add (torchstat); FlopCounterMode does not
    assert 2 * (report.total.flops - conv_bias) == counter.get_total_flops()


def test_functional_ops_hand_arithmetic():
    model = FunctionalOps()
    x = torch.randn(2, 4, 6, 8)
    report = modelprof.profile(model, x)
    assert [r.name for r in report.layers] == [ROOT]
    # matmul (2,4,6,8)@(8,8): 384 outputs * K 8 = 3072;  y @ y^T: (2,4,6,6) = 288 outputs * 8 = 2304
    # SDPA BH=8, L=S=6, E=Ev=8: 8*6*6*16 + 8*6*6 + 8*6*(3*6-1) = 4608 + 288 + 816 = 5712
    # interpolate nearest to (2,4,12,16): 1536 outputs * 1 tap;  + 1.0: 1536 outputs
    assert report.total.flops == 3072 + 2304 + 5712 + 1536 + 1536
    assert report.total.params == 64
    assert not report.unsupported


def test_transformer_residuals_attention_and_tied_weights():
    model = TinyTransformer()
    report = modelprof.profile(model, torch.randint(0, 1000, (1, 32)))
    assert report.total.params == sum(p.numel() for p in model.parameters())  # tied head counted once
    assert_rows_add_up(report)
    rows = {r.name: r for r in report.layers}
    assert "matmul" in rows["blocks.0"].ops and "scaled_dot_product_attention" in rows["blocks.1"].ops
    assert not report.unsupported


def test_shared_and_frozen_parameters():
    report = modelprof.profile(Shared(), torch.randn(3, 4))
    assert report.total.params == 16 + 10 and report.total.trainable_params == 16
    assert report.total.non_trainable_params == 10
    assert_rows_add_up(report)


def test_five_input_model_batch_scales_linear_layers():
    model = CaptionModel()
    for batch in (1, 3):
        args, kwargs = build_inputs(CAPTION_SPECS, batch, "cpu")
        report = modelprof.profile(model, *args, **kwargs)
        rows = {r.name: r for r in report.layers}
        assert rows["region_proj"].flops == batch * 50 * 2048 * 512
        assert rows["word_embedding"].input_shape == ((batch, 19),)
        assert not report.unsupported
        assert_rows_add_up(report)


def test_thop_on_adapter_agrees_on_the_layers_thop_supports():
    thop = pytest.importorskip("thop")
    model = CaptionModel()
    adapter = SingleTensorAdapter(copy.deepcopy(model), CAPTION_SPECS)
    x = torch.randn(2, 50, 2048)
    _, _, layers = thop.profile(adapter, inputs=(x,), ret_layer_info=True, verbose=False)
    thop_linear = {name: info[0] for name, info in layers["model"][2].items()
                   if isinstance(getattr(model, name), nn.Linear)}
    thop_linear["feed_forward"] = layers["model"][2]["feed_forward"][0]  # two Linears and a ReLU (0 in thop)

    args, kwargs = build_inputs(CAPTION_SPECS, 2, "cpu")
    report = modelprof.profile(model, *args, **kwargs)
    ours = {}
    for row in report.layers:
        if row.type == "Linear":
            ours[row.name.split(".")[0]] = ours.get(row.name.split(".")[0], 0) + row.flops
    assert ours == {k: int(v) for k, v in thop_linear.items()}


def test_recurrent_model_counted():
    report = modelprof.profile(Recurrent(), torch.randn(2, 5, 8))
    assert {r.name for r in report.layers} == {"lstm", "gru", "rnn"}
    assert all(r.flops > 0 for r in report.layers)
    assert not report.unsupported


def test_unsupported_ops_are_listed_not_zeroed():
    from fixtures import Unsupported

    report = modelprof.profile(Unsupported(), torch.randn(2, 3, 3))
    assert report.unsupported and all(n >= 1 for n in report.unsupported.values())
    assert any("inv" in op for op in report.unsupported)


def test_model_left_exactly_as_before():
    model = resnet18()
    model.train()
    model.layer1.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = {name: set(vars(m)) for name, m in model.named_modules()}
    modes = {name: m.training for name, m in model.named_modules()}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    modelprof.profile(model, torch.randn(2, 3, 64, 64))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN stats not updated
    assert {name: set(vars(m)) for name, m in model.named_modules()} == attrs
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert torch.backends.mha.get_fastpath_enabled() == fastpath


def test_model_left_untouched_when_forward_fails():
    model = resnet18()
    with pytest.raises(modelprof.errors.ModelError, match="conv1"):
        modelprof.profile(model, torch.randn(1, 4, 32, 32))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all("forward" not in vars(m) for m in model.modules())  # the tracker's wrappers are gone
    assert model.training


def test_a_forward_of_the_instance_is_counted_and_given_back():
    # the tracker wraps each module's forward while it counts; a module whose forward is an instance attribute (as
    # accelerate's hooks make it) gets that same attribute back
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    own = model[0].forward
    model[0].forward = lambda x: own(x) * 2  # one more multiply per output element: 3 Flops at batch 1
    replaced = model[0].forward
    report = modelprof.profile(model, torch.randn(1, 4))
    assert model[0].forward is replaced and "forward" not in vars(model[1])
    # Linear 4->3: 4·3 = 12 Flops (bias add included, COUNTING.md), then the ×2: 3 more, all on row 0
    assert {r.name: r.flops for r in report.layers}["0"] == 12 + 3


def test_a_table_of_ones_own_is_not_answered_from_the_registrys_cache():
    from modelprof.counting.formulas import FORMULAS, Cost, register_formula

    model, x = nn.Linear(4, 3), torch.randn(1, 4)
    registry = modelprof.profile(model, x).total.flops  # counted (and cached) with the registry's formula
    table = {op: f for op, f in FORMULAS.items() if op is not torch.ops.aten.linear}
    register_formula(torch.ops.aten.linear, table=table)(lambda args, kwargs, out: Cost(madd=7, flops=7))
    assert modelprof.count_costs(model, (x,), formulas=table).total.flops == 7 != registry


def test_meta_device_matches_cpu_counts():
    torch.manual_seed(0)
    cpu = Decoder()
    with torch.device("meta"):
        meta = Decoder()
    tokens = torch.randint(0, 1000, (1, 16))
    a = modelprof.profile(cpu, tokens)
    b = modelprof.profile(meta, tokens.to("meta"))
    # Arithmetic and parameters are identical. Memory may differ: the meta SDPA kernel returns a contiguous
    # output where CPU flash attention returns a transposed one, so a later reshape copies on meta only.
    def arithmetic(r):
        return [(x.name, x.params, x.madd, x.flops) for x in (*r.layers, r.total)]

    assert arithmetic(a) == arithmetic(b)
    assert b.device == "meta"


def test_encoder_fast_path_is_counted_layer_by_layer():
    layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    report = modelprof.profile(model, torch.randn(1, 10, 32))
    assert not report.unsupported
    rows = {r.name: r for r in report.layers}
    # FFN Linear modules per layer: 10*32*64 + 10*64*32 = 40960 MACs, two layers
    assert sum(r.flops for r in report.layers if r.type == "Linear") == 2 * 40960
    # MultiheadAttention uses in_proj and out_proj functionally, so they land on its own row:
    # in_proj 10*32*96 = 30720, out_proj 10*32*32 = 10240, attention BH=4, L=S=10, E=Ev=8:
    # 4*10*10*16 + 4*10*10 + 4*10*(3*10-1) = 6400 + 400 + 1160 = 7960
    assert rows["layers.0.self_attn"].flops == 30720 + 10240 + 7960
    assert rows["layers.0.self_attn.out_proj"].flops == 0  # never called as a module: params only
    assert rows["layers.0.self_attn.out_proj"].params == 32 * 32 + 32


def test_fold_depth_keeps_totals():
    report = modelprof.profile(resnet18(), torch.randn(1, 3, 64, 64))
    for depth in (1, 2, 3):
        folded = report.fold(depth)
        assert_rows_add_up(folded)
        assert all(r.name == ROOT or r.name.count(".") < depth for r in folded.layers)
    assert [r.name for r in report.fold(1).layers][:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    assert report.fold(0).layers == ()
    assert dict((r.name, r.type) for r in report.fold(1).layers)["layer1"] == "Sequential"


def test_in_place_scatters_move_data():
    """The in-place scatters mixtures of experts run (PhiMoE's router: ``scatter_add_``) are counted as their
    out-of-place forms are, as data movement. By hand: (4, 8) float32 self, (2, 8) int64 index, (2, 8) float32
    source: MemRead 128 + 128 + 64 bytes, MemWrite the 128-byte result."""

    class Scatters(nn.Module):
        def forward(self, x: torch.Tensor, index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
            return x.clone().scatter_add_(0, index, src)

    x, index, src = torch.zeros(4, 8), torch.randint(0, 4, (2, 8)), torch.ones(2, 8)
    report = modelprof.profile(Scatters(), x, index, src)
    assert not report.unsupported
    # clone: reads and writes 128 bytes; scatter_add_: as above
    assert (report.total.flops, report.total.mem_read, report.total.mem_write) == (0, 128 + 320, 128 + 128)


def test_polar_makes_complex_numbers_elementwise():
    """``torch.polar`` (DeepSeek-V2's rotary tables), by hand: (3, 4) float32 magnitudes and angles make 12 complex64
    numbers, each a cosine, a sine and two products: 48 Flops; MemRead 48 + 48 bytes, MemWrite 12 · 8."""

    class Polar(nn.Module):
        def forward(self, magnitude: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
            return torch.polar(magnitude, angle)

    report = modelprof.profile(Polar(), torch.ones(3, 4), torch.zeros(3, 4))
    assert not report.unsupported
    assert (report.total.flops, report.total.mem_read, report.total.mem_write) == (48, 96, 96)


def test_triangular_solves_count_their_substitution():
    """``torch.linalg.solve_triangular`` (gated delta-rule attention's chunked form: Qwen3-Next's, Qwen4-Exp's) and
    the older ``torch.triangular_solve``, by hand. A (2, 4, 4) float32 against B (2, 4, 3): 2 · 3 = 6 systems of
    n = 4 unknowns, the i-th found from the i - 1 before it: 0 + 1 + 2 + 3 = 6 multiply-adds and 4 divisions a
    system, Flops 6 · (6 + 4) = 60, MAdd 6 · (12 + 4) = 96; with a unit diagonal no division: 36 and 72. MemRead
    A's 128 and B's 96 bytes, MemWrite the 96-byte solution (triangular_solve also writes its 128-byte copy of A)."""

    class Solve(nn.Module):
        def __init__(self, unit: bool, legacy: bool) -> None:
            super().__init__()
            self.unit, self.legacy = unit, legacy

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            if self.legacy:
                return torch.triangular_solve(b, a, upper=False, unitriangular=self.unit).solution
            return torch.linalg.solve_triangular(a, b, upper=False, unitriangular=self.unit)

    a, b = torch.eye(4).expand(2, 4, 4).contiguous(), torch.ones(2, 4, 3)
    for unit, flops, madd in ((False, 60, 96), (True, 36, 72)):
        for legacy in (False, True):
            report = modelprof.profile(Solve(unit, legacy), a, b)
            assert not report.unsupported
            total = report.total
            assert (total.flops, total.madd, total.mem_read) == (flops, madd, 128 + 96), (unit, legacy)
            assert total.mem_write == 96 + (128 if legacy else 0), (unit, legacy)
