"""Attention's matrix products at 16k tokens over 8k tokens on the Llama-2-70B config (meta device).

    python benchmarks/attention_growth.py

Counts the prefill with a formula table that keeps only scaled dot-product attention, so the ratio is attention's
alone. It must be 4.00 (each of L queries reads S = L keys: doubling both quadruples the products); calflops'
per-module approach gives 2.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402

from modelprof.counting.api import count_costs  # noqa: E402
from modelprof.counting.formulas import FORMULAS, Cost  # noqa: E402
from modelprof.loading.hf import build_from_config  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "configs" / "llama-2-70b"


def main() -> None:
    aten = torch.ops.aten
    attention = {aten.scaled_dot_product_attention, aten._scaled_dot_product_flash_attention_for_cpu,
                 aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_flash_attention}
    table = {op: (f if op in attention else (lambda a, k, o: Cost())) for op, f in FORMULAS.items()}
    with torch.device("meta"):
        model = build_from_config(str(CONFIG))
    counts = {}
    for tokens in (8192, 16384):
        started = time.perf_counter()
        report = count_costs(model, (torch.randint(0, 32000, (1, tokens), device="meta"),), formulas=table)
        counts[tokens] = report.total.flops
        print(f"{tokens:,} tokens: attention {report.total.flops:,} multiply-accumulates "
              f"({time.perf_counter() - started:.1f} s)")
    print(f"ratio 16k / 8k: {counts[16384] / counts[8192]:.4f}")


if __name__ == "__main__":
    main()
