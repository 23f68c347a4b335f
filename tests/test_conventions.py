"""``--convention``: the peers' own test cases, with their literal expected numbers, reproduced exactly.

Each case names the peer's file and test it comes from. The numbers are the peers' (or hand arithmetic in a comment
where the peer's test computes them from a formula); none comes from modelprof.
"""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from torch import nn

from modelprof import count_costs
from modelprof.counting.conventions import CONVENTIONS
from modelprof.errors import UsageError


def count(model: nn.Module, *args: torch.Tensor, convention: str, **kwargs: torch.Tensor) -> int:
    return count_costs(model.eval(), args, kwargs, convention=convention).total.flops


T = torch.randn


class Calls(nn.Module):
    """A forward that makes the calls a peer's test makes inside its counter."""

    def __init__(self, body, **modules: nn.Module) -> None:
        super().__init__()
        self.body = body
        for name, module in modules.items():
            setattr(self, name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self, x)


# --------------------------------------------------------------------------------------------------------------
# The worked example of COUNTING.md: Conv2d 3->2, k7 s2 p3 (with bias) on 1x3x500x500, output 1x2x250x250
# --------------------------------------------------------------------------------------------------------------

CONV = dict(in_channels=3, out_channels=2, kernel_size=7, stride=2, padding=3)
# products: 2*250*250 outputs * 3*49 = 18,375,000; bias: 125,000 outputs
WORKED = {
    "thop": 18_375_000,  # no bias
    "fvcore": 18_375_000,  # no bias
    "ptflops": 18_375_000 + 125_000,  # bias on
    "calflops": 2 * 18_375_000 + 125_000,  # 2 per product, bias 1 per output
    "flopcounter": 2 * 18_375_000,  # 2 per product, no bias
}


@pytest.mark.parametrize("name", list(WORKED))
def test_worked_example_under_every_convention(name: str) -> None:
    assert count(nn.Conv2d(**CONV), T(1, 3, 500, 500), convention=name) == WORKED[name]


def test_every_convention_is_tested() -> None:
    assert set(WORKED) == set(CONVENTIONS)


# --------------------------------------------------------------------------------------------------------------
# PyTorch test/test_flop_counter.py (TestFlopCounter)
# --------------------------------------------------------------------------------------------------------------


def test_flopcounter_test_op() -> None:
    """test_op: mm 240; bmm 720; three addmm 720; baddbmm 720; conv2d 28800; conv1d 1440."""
    def run(body) -> int:
        return count(Calls(body), T(1), convention="flopcounter")

    assert run(lambda self, x: torch.mm(T(4, 5), T(5, 6))) == 240
    assert run(lambda self, x: torch.bmm(T(3, 4, 5), T(3, 5, 6))) == 720
    assert run(lambda self, x: (torch.addmm(T(4, 6), T(4, 5), T(5, 6)), torch.addmm(T(4, 1), T(4, 5), T(5, 6)),
                                torch.addmm(T(6), T(4, 5), T(5, 6)))) == 720
    assert run(lambda self, x: torch.baddbmm(T(3, 4, 6), T(3, 4, 5), T(3, 5, 6))) == 720
    assert run(lambda self, x: torch.conv2d(T(2, 3, 6, 6), T(6, 3, 4, 4), padding=1)) == 28800
    assert run(lambda self, x: torch.conv1d(T(2, 3, 6), T(6, 3, 4), padding=1)) == 1440


def test_flopcounter_test_flop_counter_variety() -> None:
    """test_flop_counter_variety: mm, addmm, matmul, einsum and a Linear(9, 10): 3012."""
    def body(self, x):
        torch.mm(T(4, 5), T(5, 6))
        torch.addmm(T(4, 6), T(4, 5), T(5, 6), beta=0.5, alpha=0.5)
        torch.matmul(T(5, 6), T(6, 7))
        torch.einsum("ab,bc->ac", T(6, 7), T(7, 8))
        return self.mod(T(8, 9))

    assert count(Calls(body, mod=nn.Linear(9, 10)), T(1), convention="flopcounter") == 3012


def test_flopcounter_test_module_layer1() -> None:
    """test_module: ResNet-18's layer1 convolutions, forward: 924844032 (also the only ops it counts there)."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    torchvision = pytest.importorskip("torchvision")
    report = count_costs(torchvision.models.resnet18().eval(), (T(1, 3, 224, 224),), convention="flopcounter")
    assert sum(r.flops for r in report.layers if r.name.startswith("layer1.")) == 924844032


# --------------------------------------------------------------------------------------------------------------
# fvcore tests/test_flop_count.py (TestFlopCountAnalysis); the expected numbers are its gt_flop formulas
# --------------------------------------------------------------------------------------------------------------


def test_fvcore_test_nn_and_test_linear() -> None:
    # test_nn: batch 5 * in 8 * out 4 = 160; test_linear: 5 * 10 * 20 = 1000, and 5 * 5 * 10 * 20 = 5000 on 3-D input
    assert count(nn.Linear(8, 4), T(5, 8), convention="fvcore") == 160
    assert count(nn.Linear(10, 20), T(5, 10), convention="fvcore") == 1000
    assert count(nn.Linear(10, 20), T(5, 5, 10), convention="fvcore") == 5000


@pytest.mark.parametrize(("dims", "batch", "cin", "cout", "size", "kernel", "padding", "stride", "groups",
                          "transposed", "expected"), [
    # gt_flop = batch * in * out * k**dims * spatial**dims / groups, spatial = (size + 2p - k) // s + 1 (transposed:
    # the input's size)
    (2, 5, 10, 3, 15, 3, 1, 1, 1, False, 5 * 10 * 3 * 9 * 15 ** 2),
    (2, 2, 10, 6, 20, 3, 1, 2, 1, False, 2 * 10 * 6 * 9 * 10 ** 2),
    (2, 5, 16, 8, 15, 5, 2, 1, 4, False, 5 * 16 * 8 * 25 * 15 ** 2 // 4),
    (2, 5, 16, 8, 15, 3, 1, 1, 8, False, 5 * 16 * 8 * 9 * 15 ** 2 // 8),
    (1, 5, 10, 3, 15, 3, 1, 1, 1, False, 5 * 10 * 3 * 3 * 15),
    (3, 5, 10, 3, 15, 3, 1, 1, 1, False, 5 * 10 * 3 * 27 * 15 ** 3),
    (2, 5, 10, 3, 15, 3, 1, 1, 1, True, 5 * 10 * 3 * 9 * 15 ** 2),
])
def test_fvcore_test_conv(dims: int, batch: int, cin: int, cout: int, size: int, kernel: int, padding: int,
                          stride: int, groups: int, transposed: bool, expected: int) -> None:
    layer = getattr(nn, f"ConvTranspose{dims}d" if transposed else f"Conv{dims}d")
    conv = layer(cin, cout, kernel, stride, padding, groups=groups)
    assert count(conv, T(batch, cin, *(size,) * dims), convention="fvcore") == expected


# --------------------------------------------------------------------------------------------------------------
# thop tests/test_conv2d.py, tests/test_matmul.py, tests/test_relu.py (TestUtils)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_thop_test_conv2d(bias: bool) -> None:
    """test_conv2d_no_bias and test_conv2d: Conv2d(3, 12, 5, padding=1) on 1x3x32x32: 810000 either way."""
    conv = nn.Conv2d(3, 12, kernel_size=(5, 5), stride=1, padding=1, dilation=1, groups=1, bias=bias)
    assert count(conv, T(1, 3, 32, 32), convention="thop") == 810000


def test_thop_test_matmul_and_relu() -> None:
    # test_matmul_case2: n * in_c * out_c = 1 * 100 * 200; test_relu: 0
    assert count(nn.Linear(100, 200), T(1, 100), convention="thop") == 1 * 100 * 200
    assert count(nn.ReLU(), T(1, 100), convention="thop") == 0


# --------------------------------------------------------------------------------------------------------------
# ptflops tests/common_test.py (TestOperations)
# --------------------------------------------------------------------------------------------------------------


def test_ptflops_common_test() -> None:
    # test_conv: 2759904; test_fc: 8; test_fc_multidim: (3 * 2 + 2) * 4 * 5
    assert count(nn.Sequential(nn.Conv2d(3, 2, 3, bias=True)), T(1, 3, 224, 224), convention="ptflops") == 2759904
    assert count(nn.Sequential(nn.Linear(3, 2, bias=True)), T(1, 3), convention="ptflops") == 8
    assert count(nn.Sequential(nn.Linear(3, 2, bias=True)), T(1, 4, 5, 3), convention="ptflops") == 8 * 4 * 5


def test_ptflops_input_constructor_dict_and_interpolate() -> None:
    class CustomLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2, bias=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    # test_input_constructor_dict: (macs, params) == (8, 8), the input given as keyword x
    assert count(CustomLinear(), convention="ptflops", x=T(1, 3)) == 8
    # test_func_interpolate_args asks macs > 0: the patched F.interpolate counts size 20*20 * batch 1 * 3 channels
    model = Calls(lambda self, x: nn.functional.interpolate(input=x, size=(20, 20), mode="bilinear",
                                                            align_corners=False))
    assert count(model, T(1, 3, 10, 10), convention="ptflops") == 1200


def test_ptflops_counts_functions_in_a_row_of_their_own() -> None:
    """ptflops adds its patched functions' count to the total only: the module rows are its per-layer numbers."""
    model = Calls(lambda self, x: nn.functional.relu(self.fc(x)), fc=nn.Linear(3, 2))
    report = count_costs(model, (T(1, 3),), convention="ptflops")
    rows = {r.name: r.flops for r in report.layers}
    assert rows["fc"] == 3 * 2 + 2 and rows["(functions)"] == 2  # the relu's 2 outputs
    assert report.total.flops == 10


# --------------------------------------------------------------------------------------------------------------
# The convention's rules in modelprof's own terms
# --------------------------------------------------------------------------------------------------------------


def test_thop_matches_exact_classes_only() -> None:
    """thop looks classes up with type(m) in register_hooks: a subclass of Linear counts 0."""
    class MyLinear(nn.Linear):
        pass

    assert count(nn.Sequential(nn.Linear(4, 3)), T(2, 4), convention="thop") == 2 * 4 * 3
    assert count(nn.Sequential(MyLinear(4, 3)), T(2, 4), convention="thop") == 0


class _Parent(nn.Module):
    def __init__(self, lin: nn.Module) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class _Shared(nn.Module):
    """One Linear(4, 4) held by two parents (a.lin and b.lin) and called twice: 16 multiply-adds a call."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(4, 4, bias=False)
        self.a, self.b = _Parent(shared), _Parent(shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


@pytest.mark.parametrize(("name", "expected"), [
    ("fvcore", 2 * 16),  # per op: two calls
    ("flopcounter", 2 * 16 * 2),  # per op, 2 FLOPs per multiply-add
    # ptflops: one hook, its count accumulated over both calls, then summed over the tree once per parent
    ("ptflops", 2 * 16 * 2),
    # calflops: the patched F.linear charged to the module, summed over the tree once per parent, 2 per MAC
    ("calflops", 2 * 16 * 2 * 2),
    # thop: model.apply(add_hooks) walks the tree with the module twice, so it has two hooks (each call counts
    # twice), and dfs_count sums it once per parent
    ("thop", 2 * 16 * 2 * 2),
])
def test_a_module_with_two_parents(name: str, expected: int) -> None:
    assert count(_Shared(), T(1, 4), convention=name) == expected


def test_calflops_counts_tensor_methods_not_operators() -> None:
    """calflops patches torch.add and torch.matmul, not the + and @ operators (calflops 0.3.2 itself gives 0, 6, 0
    and 24 here); 2 FLOPs per multiply-add of matmul."""
    assert count(Calls(lambda self, x: x + x), T(2, 3), convention="calflops") == 0
    assert count(Calls(lambda self, x: torch.add(x, x)), T(2, 3), convention="calflops") == 6
    assert count(Calls(lambda self, x: x @ x.T), T(2, 3), convention="calflops") == 0
    # 2 x 3 @ 3 x 2: 2 * (2 * 3 elements of the first) * 2 columns
    assert count(Calls(lambda self, x: torch.matmul(x, x.T)), T(2, 3), convention="calflops") == 24


def test_patched_functions_are_restored() -> None:
    before = (torch.nn.functional.relu, torch.matmul, torch.Tensor.add, "add" in torch.Tensor.__dict__)
    count(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), T(1, 3), convention="calflops")
    count(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), T(1, 3), convention="ptflops")
    assert (torch.nn.functional.relu, torch.matmul, torch.Tensor.add, "add" in torch.Tensor.__dict__) == before


def test_convention_refused_off_a_forward_and_unknown() -> None:
    from modelprof.workload import Training, Workload

    with pytest.raises(UsageError, match="one forward"):
        count_costs(nn.Linear(3, 2), (T(1, 3),), workload=Workload(Training()), convention="thop")
    with pytest.raises(UsageError, match="unknown convention 'thopp'"):
        count_costs(nn.Linear(3, 2), (T(1, 3),), convention="thopp")


# --------------------------------------------------------------------------------------------------------------
# The command line: stats, check and compare
# --------------------------------------------------------------------------------------------------------------

def test_stats_convention_json_and_table(run) -> None:
    base = ["stats", "torch.nn:Conv2d", "--kwargs", json.dumps(CONV), "--shape", "3,500,500"]
    code, out, err = run(*base, "--convention", "ptflops", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["total"]["flops"] == WORKED["ptflops"] and data["total"]["madd"] == 0
    assert data["convention"]["name"] == "ptflops" and data["convention"]["unit"] == "MACs"
    code, out, err = run(*base, "--convention", "thop")
    assert code == 0 and "MACs (thop)" in out and "MACs as thop counts them" in out
    assert "MAdd" not in out


def test_stats_convention_refusals(run) -> None:
    base = ["stats", "torch.nn:Linear", "--kwargs", '{"in_features": 3, "out_features": 2}', "--shape", "3"]
    for extra, message in ((["--convention", "thop", "--train"], "one forward"),
                           (["--convention", "thop", "--crosscheck", "thop"], "drop --crosscheck"),
                           (["--convention", "nope"], "unknown convention")):
        code, out, err = run(*base, *extra)
        assert code == 2 and message in err and out == "", err


def test_check_and_compare_under_a_convention(run, tmp_path) -> None:
    base = ["torch.nn:Conv2d", "--kwargs", json.dumps(CONV), "--shape", "3,500,500"]
    code, out, err = run("check", *base, "--convention", "thop", "--max-flops", "18375000")
    assert code == 0, err
    code, out, err = run("check", *base, "--convention", "calflops", "--max-flops", "18375000")
    assert code == 1, err
    code, out, err = run("check", *base, "--convention", "thop", "--max-madd", "1G")
    assert code == 2 and "--max-madd" in err

    old, new, own = tmp_path / "old.json", tmp_path / "new.json", tmp_path / "own.json"
    for path, extra in ((old, ["--convention", "fvcore"]), (new, ["--convention", "fvcore"]), (own, [])):
        assert run("stats", *base, *extra, "--format", "json", "-o", path)[0] == 0
    code, out, err = run("compare", old, new, "--convention", "fvcore", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["convention"]["name"] == "fvcore"
    code, out, err = run("compare", old, own)
    assert code == 2 and "fvcore, modelprof" in err
    code, out, err = run("compare", old, new, "--convention", "thop")
    assert code == 2 and "--convention" in err
