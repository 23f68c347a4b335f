"""Each tool's multiply-accumulate count against the exact value, whether it ran, and its time.

The exact value is the multiply-accumulates of every matrix product the forward runs (convolutions, linear
layers, matmul/bmm, the two products of attention, the gate products of recurrent layers), from an independent
counter: PyTorch's FlopCounterMode in the configuration where it sees every product (torch.no_grad, the fused
encoder fast path off, the math attention backend), halved (it counts 2 per multiply-accumulate). For the LSTM,
whose CPU kernel FlopCounterMode cannot see, it is the hand formula T*N*sum_layers 4H(I + H).

modelprof's "products" column counts with modelprof's own engine restricted to the same products (bias adds,
softmax and elementwise ops left out); its "total" column is what `modelprof stats` reports as Flops.

    python benchmarks/tool_accuracy.py
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from captioning import CaptionModel  # noqa: E402
from resnet import resnet18, resnet50  # noqa: E402

import modelprof  # noqa: E402
from modelprof import DType, InputSpec, SingleTensorAdapter  # noqa: E402
from modelprof.counting.crosscheck import _torchstat_layers  # noqa: E402
from modelprof.counting.formulas import FORMULAS, Cost, conv_cost  # noqa: E402


class MobileNetStyle(nn.Module):
    """Depthwise-separable blocks with Hardswish, as in MobileNet v2/v3."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                 nn.Hardswish(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.Hardswish())

        self.features = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.Hardswish(),
                                      block(32, 64, 1), block(64, 128, 2), block(128, 256, 2), block(256, 512, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, 1000)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


class Functional(nn.Module):
    """Functional matmul, attention and interpolate in forward; one Linear module."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(64, 64)
        self.weight = nn.Parameter(torch.randn(64, 64))

    def forward(self, x):  # (N, 4, 32, 64)
        y = torch.matmul(self.proj(x), self.weight)
        att = F.scaled_dot_product_attention(y, y, y)
        scores = att @ att.transpose(-2, -1)
        return F.interpolate(scores, scale_factor=2, mode="bilinear")


class Recurrent(nn.Module):
    """Two-layer LSTM, 256 -> 512."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(256, 512, num_layers=2, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0]


def encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True)
    return nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)


CAPTION_SPECS = [InputSpec((50, 2048)), InputSpec((50, 4)), InputSpec((49, 2048)), InputSpec((50, 49)),
                 InputSpec((19,), DType.INT64, high=10000)]


def cases() -> list[tuple[str, nn.Module, tuple, int | None]]:
    """(label, model, positional inputs, exact MACs when given by hand)."""
    torch.manual_seed(0)
    caption_inputs = tuple(s.make(1, "cpu") for s in CAPTION_SPECS)
    return [
        ("ResNet-18", resnet18(), (torch.randn(1, 3, 224, 224),), None),
        ("ResNet-50", resnet50(), (torch.randn(1, 3, 224, 224),), None),
        ("MobileNet-style", MobileNetStyle(), (torch.randn(1, 3, 224, 224),), None),
        ("Transformer encoder 4×256", encoder(), (torch.randn(1, 128, 256),), None),
        ("Functional matmul/attention/interpolate", Functional(), (torch.randn(1, 4, 32, 64),), None),
        ("Five-input captioning", CaptionModel(), caption_inputs, None),
        # T=50, N=4, H=512: layer 1 4H(256 + H), layer 2 4H(512 + H)
        ("LSTM 2×512", Recurrent(), (torch.randn(4, 50, 256),), 50 * 4 * (4 * 512 * (256 + 512) + 4 * 512 * 1024)),
    ]


def reference(model: nn.Module, inputs: tuple) -> int:
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model.eval()(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() // 2


def products_only() -> dict:
    """A formula table for modelprof's engine with every formula but the matrix products' set to zero Flops
    (the global registry is left alone)."""
    saved = dict(FORMULAS)
    aten = torch.ops.aten

    def conv(transposed: bool) -> Callable:
        def formula(args, kwargs, out):
            t = transposed if transposed is not None else bool(args[6])
            x, w, o = args[0], args[1], out if not isinstance(out, tuple) else out[0]
            return Cost(flops=conv_cost(x, w, None, o, t).flops)
        return formula

    def product(args, kwargs, out):
        return Cost(flops=saved[aten.mm](args, kwargs, out).flops)

    def linear(args, kwargs, out):
        return Cost(flops=saved[aten.linear](args, kwargs, out).flops)

    def addmm(args, kwargs, out):
        return Cost(flops=saved[aten.addmm](args, kwargs, out).flops)

    def attention(args, kwargs, out):
        q, k, v = args[:3]
        bh = q.numel // (q.shape[-2] * q.shape[-1])
        return Cost(flops=bh * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1]))

    def lstm(args, kwargs, out):
        x, hx, params, has_bias, layers, _, _, bidirectional, batch_first = args[:9]
        steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
        hidden, stride, directions = hx[0].shape[-1], 4 if has_bias else 2, 2 if bidirectional else 1
        total = 0
        for layer in range(layers):
            inputs = params[layer * directions * stride].shape[1]
            total += directions * 4 * hidden * (inputs + hidden)
        return Cost(flops=steps * batch * total)

    keep = {aten.conv1d: conv(False), aten.conv2d: conv(False), aten.conv3d: conv(False),
            aten.convolution: conv(None), aten.linear: linear, aten.mm: product, aten.bmm: product,
            aten.matmul: product, aten.addmm: addmm, aten.baddbmm: addmm,
            aten.scaled_dot_product_attention: attention, aten.lstm: lstm}
    return {op: keep.get(op, lambda args, kwargs, out: Cost()) for op in saved}


def tools(model: nn.Module, inputs: tuple) -> dict[str, Callable[[], float]]:
    single = inputs[0] if len(inputs) == 1 else None
    wrapped = SingleTensorAdapter(model, CAPTION_SPECS) if single is None else model
    x = inputs[0]

    def modelprof_products():
        return modelprof.count_costs(model, inputs, formulas=products_only()).total.flops

    def thop_count():
        import thop

        with contextlib.redirect_stdout(io.StringIO()):
            return thop.profile(copy.deepcopy(wrapped), inputs=(x,), verbose=False)[0]

    def ptflops_count():
        from ptflops import get_model_complexity_info

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return get_model_complexity_info(copy.deepcopy(wrapped), tuple(x.shape[1:]),
                                             input_constructor=lambda _: x, as_strings=False,
                                             print_per_layer_stat=False, verbose=False)[0]

    def fvcore_count():
        from fvcore.nn import FlopCountAnalysis

        with contextlib.redirect_stderr(io.StringIO()):
            analysis = FlopCountAnalysis(model, inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return analysis.total()

    def torchstat_count():
        # torchstat's own report crashes on current pandas: its per-layer formulas, as `--backend torchstat` runs
        # them; batch 1 only, so the LSTM case (batch 4) is skipped
        if x.shape[0] != 1:
            raise RuntimeError("torchstat profiles batch 1 only")
        layers = _torchstat_layers(copy.deepcopy(wrapped), x)
        failed = sum("fails" in note for _, _, note in layers.values())
        if failed:
            raise RuntimeError(f"{failed} layers failed")
        return sum(flops for flops, _, _ in layers.values() if flops is not None)

    def flop_counter_mode():
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(*inputs)
        return counter.get_total_flops() / 2

    return {
        "modelprof products": modelprof_products,
        "modelprof total": lambda: modelprof.profile(model, *inputs).total.flops,
        "thop": thop_count,
        "ptflops": ptflops_count,
        "fvcore": fvcore_count,
        "torchstat": torchstat_count,
        "FlopCounterMode": flop_counter_mode,
    }


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    names = list(tools(nn.Identity(), (torch.zeros(1),)))
    print("| model | exact MACs | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for label, model, inputs, exact in cases():
        model.eval()
        exact = exact if exact is not None else reference(model, inputs)
        cells = []
        for run in tools(model, inputs).values():
            start = time.perf_counter()
            try:
                value = float(run())
            except Exception as exc:  # a tool that cannot run this model
                cells.append(f"failed ({exc})" if isinstance(exc, RuntimeError) else f"failed ({type(exc).__name__})")
                continue
            seconds = time.perf_counter() - start
            error = 100 * (value - exact) / exact
            mark = "exact" if value == exact else f"{error:+.1f} %"
            cells.append(f"{value / 1e6:,.1f}M ({mark}; {seconds * 1e3:.0f} ms)")
        print(f"| {label} | {exact / 1e6:,.1f}M | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
