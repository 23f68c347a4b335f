"""Backward matrix-product MACs of ``stats --train`` against PyTorch's FlopCounterMode.

    python benchmarks/train_flops.py

For ResNet-18 (batch 8, 224x224), a BERT-base encoder (batch 8, 128 tokens) and a Llama-style decoder
(transformers' LlamaForCausalLM, 8 layers, grouped-query attention, batch 2, 512 tokens), both count one training
step with the loss ``sum(output)``. modelprof counts with a formula table that keeps only the matrix products (mm,
bmm, addmm, baddbmm, convolution and its backward without the bias gradient, grouped mm), so its backward MACs and
FlopCounterMode's backward FLOPs / 2 count the same thing. Attention runs as matmuls ("eager"): on CPU
FlopCounterMode counts the fused SDPA kernel as 0.
"""

from __future__ import annotations

import copy
import sys
import time
import types
from pathlib import Path

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from resnet import resnet18  # noqa: E402

from modelprof.counting.formulas import FORMULAS, Cost  # noqa: E402
from modelprof.counting.train import count_train_step  # noqa: E402

aten = torch.ops.aten


def products_only() -> dict:
    def conv_backward(args, kwargs, out):
        return Cost(flops=FORMULAS[aten.convolution_backward](args, kwargs, out).flops
                    - (args[0].numel if args[10][2] else 0))

    keep = {op: FORMULAS[op] for op in (aten.mm, aten.bmm, aten.addmm, aten.baddbmm, aten.convolution,
                                        aten._grouped_mm)}
    keep[aten.convolution_backward] = conv_backward
    return {op: keep.get(op, lambda a, k, o: Cost()) for op in FORMULAS}


def loss(output, *inputs):
    if isinstance(output, torch.Tensor):
        return output.sum()
    return sum(t.sum() for t in output.values() if isinstance(t, torch.Tensor) and t.is_floating_point())


def flop_counter(model, args) -> tuple[int, int]:
    """(forward, backward) FLOPs by FlopCounterMode: forward alone, then forward and backward, less the forward."""
    model = copy.deepcopy(model).train()
    forward, both = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with forward:
        model(*args)
    with both:
        loss(model(*args)).backward()
    return forward.get_total_flops(), both.get_total_flops() - forward.get_total_flops()


def models():
    import transformers

    bert = transformers.BertConfig()
    bert._attn_implementation = "eager"
    llama = transformers.LlamaConfig(hidden_size=1024, num_hidden_layers=8, num_attention_heads=16,
                                     num_key_value_heads=4, intermediate_size=2816, vocab_size=32000,
                                     max_position_embeddings=1024)
    llama._attn_implementation = "eager"
    yield "ResNet-18, batch 8, 224×224", resnet18(), (torch.randn(8, 3, 224, 224),)
    yield "BERT-base encoder, batch 8, 128 tokens", transformers.BertModel(bert), (
        torch.randint(0, 30000, (8, 128)),)
    yield "Llama-style, 8 layers, GQA 16/4, batch 2, 512 tokens", transformers.LlamaForCausalLM(llama), (
        torch.randint(0, 32000, (2, 512)),)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | backward MACs, modelprof | FlopCounterMode backward FLOPs / 2 | equal | backward / forward "
          "(all ops) | modelprof step [s] |")
    print("|---|---:|---:|---|---:|---:|")
    for name, model, args in models():
        ours = count_train_step(model, args, formulas=products_only(), loss=loss)
        _, reference = flop_counter(model, args)
        started = time.perf_counter()
        full = count_train_step(model, args, loss=loss)
        seconds = time.perf_counter() - started
        ratio = full.total.bwd_flops / full.total.flops
        print(f"| {name} | {ours.total.bwd_flops:,} | {reference // 2:,} | "
              f"{'yes' if 2 * ours.total.bwd_flops == reference else 'NO'} | {ratio:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
