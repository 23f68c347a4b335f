"""Peak memory of generation: what ``stats --generate`` predicts against a child process that really generates.

    python benchmarks/generate_memory.py

A small Llama-style decoder (4 layers, 512 wide, GQA 8/2, vocabulary 32,000) generates 64 tokens after a
2,048-token prompt at batch 8, in float32 on the CPU. modelprof counts the same generation on the meta device
(nothing allocated) and predicts the peak of live tensor memory; a child process builds the model, runs one short
untimed generation to warm up its kernels, then samples its resident memory every millisecond through the
measured generation. Compared: the predicted peak less what exists before it (weights, buffers, the prompt) against
the rise of the child's resident memory, with glibc's defaults and with its mmap threshold fixed at 128 KiB (so
freed tensors go back to the system at once). Goal: within 10 %.
"""

from __future__ import annotations

import json
import sys
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402
from rss import rise_in_child  # noqa: E402

from modelprof.counting.generate import count_generation  # noqa: E402

CONFIG = {"hidden_size": 512, "intermediate_size": 1376, "num_attention_heads": 8, "num_key_value_heads": 2,
          "num_hidden_layers": 4, "vocab_size": 32000, "max_position_embeddings": 4096, "pad_token_id": 0,
          "bos_token_id": 1, "eos_token_id": 2}
BATCH, PROMPT, NEW = 8, 2048, 64

CHILD = r"""
import json, sys, types
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import torch, transformers
config = json.loads(sys.argv[1]); batch, prompt, new = map(int, sys.argv[2:5])
torch.manual_seed(0)
model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).eval()
ids = torch.randint(0, config["vocab_size"], (batch, prompt))
def generate(tokens, steps):
    with torch.inference_mode():
        out = model(tokens, use_cache=True)
        for _ in range(steps):
            out = model(out.logits[:, -1:].argmax(-1), past_key_values=out.past_key_values, use_cache=True)
generate(ids[:, :64], 2)  # warm-up: kernels and thread pools ready
report_rise(lambda: generate(ids, new))
"""


def main() -> None:
    import transformers

    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**CONFIG))
    report = count_generation(model, torch.randint(0, 32000, (BATCH, PROMPT), device="meta"), NEW)
    m = report.memory
    predicted = m.peak - m.parameters - m.buffers - m.inputs
    mib = 2**20
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; Llama-style 4×512, batch {BATCH}, "
          f"prompt {PROMPT}, {NEW} new tokens\n")
    print("| quantity | MiB |\n|---|---:|")
    print(f"| modelprof: peak of live tensors | {m.peak / mib:,.1f} |")
    print(f"| modelprof: peak less weights, buffers and prompt | {predicted / mib:,.1f} |")
    print(f"| modelprof: KV cache at the end | {report.generation.kv_cache / mib:,.1f} |")
    for fixed in (False, True):
        real = rise_in_child(CHILD, [json.dumps(CONFIG), str(BATCH), str(PROMPT), str(NEW)], fixed)
        label = "glibc mmap threshold 128 KiB" if fixed else "glibc defaults"
        print(f"| measured RSS rise, {label} | {real / mib:,.1f} ({100 * (predicted / real - 1):+.1f} %) |")


if __name__ == "__main__":
    main()
