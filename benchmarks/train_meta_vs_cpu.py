"""A training step counted on the meta device against the same step counted on CPU, across model families.

    python benchmarks/train_meta_vs_cpu.py

Each model is built twice from the same small config (random weights, nothing downloaded), on CPU and on meta,
and ``count_train_step`` counts one step of each (AdamW, the sum of the output as the loss), without and with
``--amp``. The CPU run is the reference: its kernels are the ones the meta run must stand in for (fused attention,
dropout, grouped expert products, autocast). Goal: equal totals, peak and saved activations, nothing uncounted.
"""

from __future__ import annotations

import sys
import time
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import timm  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from modelprof.counting.train import count_train_step  # noqa: E402
from modelprof.workload import Precision  # noqa: E402

TOKENS = {"input_ids": lambda device: torch.zeros(2, 32, dtype=torch.long, device=device)}
SMALL = {"num_attention_heads": 4, "vocab_size": 1000}


def hf(config: str, model: str, **kwargs):
    return lambda: getattr(transformers, model)(getattr(transformers, config)(**kwargs))


CASES = {
    "ViT-Tiny (timm)": (lambda: timm.create_model("vit_tiny_patch16_224"),
                        {"x": lambda d: torch.empty(2, 3, 224, 224, device=d)}),
    "ConvNeXt-Atto (timm)": (lambda: timm.create_model("convnext_atto"),
                             {"x": lambda d: torch.empty(2, 3, 224, 224, device=d)}),
    "GPT-2, 2 layers": (hf("GPT2Config", "GPT2LMHeadModel", n_layer=2, n_embd=64, n_head=4), TOKENS),
    "BERT, 2 layers": (hf("BertConfig", "BertModel", num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                          **SMALL), TOKENS),
    "T5, 2+2 layers": (hf("T5Config", "T5ForConditionalGeneration", num_layers=2, d_model=64, num_heads=4, d_ff=128,
                          d_kv=16),
                       {"input_ids": lambda d: torch.zeros(2, 16, dtype=torch.long, device=d),
                        "decoder_input_ids": lambda d: torch.zeros(2, 8, dtype=torch.long, device=d)}),
    "Mixtral, 2 layers, 4 experts": (hf("MixtralConfig", "MixtralForCausalLM", num_hidden_layers=2, hidden_size=64,
                                        num_key_value_heads=2, intermediate_size=128, num_local_experts=4, **SMALL),
                                     TOKENS),
    "Whisper, 1+1 layers": (hf("WhisperConfig", "WhisperModel", encoder_layers=1, decoder_layers=1, d_model=64,
                               encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                               decoder_ffn_dim=128),
                            {"input_features": lambda d: torch.zeros(2, 80, 3000, device=d),
                             "decoder_input_ids": lambda d: torch.zeros(2, 8, dtype=torch.long, device=d)}),
}


def loss(output, *inputs):
    if isinstance(output, torch.Tensor):
        return output.float().sum()
    return (output.logits if hasattr(output, "logits") else output.last_hidden_state).float().sum()


def count(build, inputs, device: str, amp: bool):
    torch.manual_seed(0)
    with torch.device(device):
        model = build()
    values = {name: make(device) for name, make in inputs.items()}
    args, kwargs = ((values["x"],), {}) if "x" in values else ((), values)
    started = time.perf_counter()
    report = count_train_step(model, args, kwargs, loss=loss, precision=Precision(amp=amp))
    return report, time.perf_counter() - started


def main() -> None:
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, timm {timm.__version__}\n")
    print("| model | `--amp` | peak, CPU | peak, meta | saved, meta | totals equal | uncounted ops | meta [s] |")
    print("|---|---|---:|---:|---:|---|---|---:|")
    for label, (build, inputs) in CASES.items():
        for amp in (False, True):
            on_cpu, _ = count(build, inputs, "cpu", amp)
            on_meta, seconds = count(build, inputs, "meta", amp)
            equal = on_cpu.total.values == on_meta.total.values and on_cpu.memory.saved == on_meta.memory.saved
            uncounted = {**on_cpu.unsupported, **on_meta.unsupported} or "none"
            print(f"| {label} | {'yes' if amp else 'no'} | {on_cpu.memory.peak:,} | {on_meta.memory.peak:,} | "
                  f"{on_meta.memory.saved:,} | {'yes' if equal else 'NO'} | {uncounted} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
