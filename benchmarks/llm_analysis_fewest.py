"""What llm-analysis (a formula estimator; `pip install llm-analysis` in a separate environment: it pins its own
dependencies) says is the fewest H100-80GB for the same jobs as `benchmarks/fewest_gpus.py`: Llama-2 7B, 13B and
70B at 4,096 tokens, batch 1 per GPU, ZeRO-3, without and with full activation recomputation, and with TP 8. The
smallest data-parallel size (1, 2, 4 ... 4,096 GPUs) whose `memory_left_per_gpu` is not negative.

llm-analysis models Megatron-shaped MLPs only (its config wants the MLP width a multiple of the hidden size), so the
models are given as its own Llama-2-7B config has them, with a 4 × hidden MLP (6.57B, 12.9B and 68.7B parameters);
its dtype is w16a16e16 (16-bit weights and activations; it counts float32 gradients and 12 bytes of optimizer state a
parameter).

    python benchmarks/llm_analysis_fewest.py /path/to/llm-analysis-venv/bin/python -o /tmp/la.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

#: name: (layers, heads, hidden, KV heads, MLP width as llm-analysis takes it)
MODELS = {"llama-2-7b": (32, 32, 4096, 32, 16384), "llama-2-13b": (40, 40, 5120, 40, 20480),
          "llama-2-70b": (80, 64, 8192, 8, 32768)}
LAYOUTS = {"FSDP": (1, 0), "FSDP + checkpointing": (1, 2), "FSDP × TP 8": (8, 0)}  # (tp, recomputation)


def per_gpu(python: str, config: Path, gpus: int, tp: int, recompute: int, out: Path) -> tuple[float, float]:
    """llm-analysis's (memory per GPU, memory left) in bytes for ``gpus`` GPUs ((0, -1) where it says the batch does
    not fit: it refuses a batch above its largest)."""
    done = subprocess.run([python, "-m", "llm_analysis.analysis", "train", "--model_name", str(config), "--gpu_name",
                    "h100-sxm-80gb", "--dtype_name", "w16a16e16", "--batch_size_per_gpu", "1", "--seq_len", "4096",
                    "--ds_zero", "3", "--tp_size", str(tp), "--dp_size", str(gpus // tp), "--total_num_tokens", "4096",
                    "--activation_recomputation", str(recompute), "--log_level", "ERROR", "--output_dir", str(out)],
                   capture_output=True, text=True)
    if done.returncode:
        if "max_batch_size_per_gpu" in done.stderr:
            return 0.0, -1.0
        raise RuntimeError(done.stderr[-2000:])
    summary = json.loads(next(out.glob("*.json")).read_text())
    for stale in out.glob("*.json"):
        stale.unlink()
    return summary["(weight+op_state+grad+act)_memory_per_gpu"], summary["memory_left_per_gpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("python", help="The python of an environment with llm-analysis installed.")
    parser.add_argument("-o", "--output", default="-")
    args = parser.parse_args()
    lines = ["| model | layout | llm-analysis: fewest H100s | its memory per GPU there [GiB] |", "|---|---|---:|---:|"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name, (layers, heads, hidden, kv, mlp) in MODELS.items():
            config = root / f"{name}.json"
            config.write_text(json.dumps({"name": name, "num_layers": layers, "n_head": heads, "hidden_dim": hidden,
                                          "vocab_size": 32000, "max_seq_len": 4096, "num_key_value_heads": kv,
                                          "ffn_embed_dim": mlp, "model_type": "llama"}))
            for layout, (tp, recompute) in LAYOUTS.items():
                found = "—"
                for gpus in (tp * 2**k for k in range(13)):
                    used, left = per_gpu(args.python, config, gpus, tp, recompute, root / "out")
                    if left >= 0:
                        found = f"{gpus} | {used / 2**30:.1f}"
                        break
                lines.append(f"| {name} | {layout} | {found} |")
                print(lines[-1], file=sys.stderr)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text) if args.output == "-" else Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
