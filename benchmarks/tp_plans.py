"""--tp 2 on every transformers causal language model whose config has a tensor-parallel plan, each built small from
its own config class (random weights, nothing downloaded): one training step of rank 0 of 2, counted on meta.

    python benchmarks/tp_plans.py [--only MODEL_TYPE ...] [--transformers]     # about 10 minutes on 2 cores

For every config class in transformers with a ``base_model_tp_plan``, the sizes are shrunk (width 64, 2 layers,
4 heads, 4 experts, vocabulary 1,000: the keys the class has), the causal language model is built from it and saved,
and ``modelprof stats DIR --input input_ids=32:int64:1000 --gpus 2 --tp 2 --train --device meta`` runs on it in a
child process. A model that fails is run again without ``--tp``: a failure there is the small config's (its sizes
do not fit together), not the plan's. With ``--transformers``, each model that fails only with ``--tp`` runs as
transformers' own 2-rank tensor-parallel job (``from_pretrained(tp_plan="auto")`` on gloo, CPU, a forward and a
backward), to see whether the plan fails there too.

Prints a Markdown table: the model type, what happened, the uncounted ops (none expected), and the parameter
elements rank 0 holds of the weights the plan splits and of those it leaves whole.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

#: The sizes every model is shrunk to, where its config class has the key.
SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_layers": 2, "n_layer": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "ffn_hidden_size": 128,
         "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32, "expert_ffn_hidden_size": 32,
         "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_topk": 2,
         "vocab_size": 1000, "max_position_embeddings": 256, "pad_token_id": 0, "bos_token_id": 1,
         "eos_token_id": 2, "tie_word_embeddings": False, "use_cache": False, "n_shared_experts": 1,
         "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1, "kv_lora_rank": 16, "q_lora_rank": 32,
         "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16, "rotary_dim": 8, "sliding_window": 16}
#: Layer lists sized for the default depth, dropped so that each class makes them for 2 layers.
DROPPED = ("layer_types", "mlp_layer_types")

TOKENS = ["--input", "input_ids=32:int64:1000", "--depth", "0", "--train", "--device", "meta", "--format", "json"]

REAL_JOB = r"""
import os, sys, types
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import torch, torch.distributed as dist, torch.multiprocessing as mp

def rank(r, folder):
    os.environ.update(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2")
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=r, world_size=2)
    try:
        import transformers
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, tp_plan="auto")
        model(input_ids=torch.randint(0, 1000, (1, 32))).logits.sum().backward()
        print("ran", flush=True)
    except Exception as exc:
        print("fails: " + (str(exc).splitlines() or [type(exc).__name__])[0][:160], flush=True)
    finally:
        dist.destroy_process_group()
    os._exit(0)

if __name__ == "__main__":
    mp.start_processes(rank, args=(sys.argv[1],), nprocs=2, join=True, start_method="spawn")
"""


def configs() -> dict[str, str]:
    """model type -> its causal language model's class name, for every config with a tensor-parallel plan."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    found = {}
    for key in CONFIG_MAPPING:
        try:
            cls = CONFIG_MAPPING[key]
        except Exception:  # noqa: BLE001 (a class transformers cannot import here)
            continue
        if getattr(cls, "base_model_tp_plan", None):
            found[key] = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(key, "")
    return found


def build(key: str, model_class: str, folder: Path) -> str:
    """Save ``key``'s model, built small, in ``folder``; '' when it is, else why not."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not model_class:
        return "no causal language model class"
    cls = CONFIG_MAPPING[key]
    default = cls()
    settings = {k: v for k, v in SMALL.items() if hasattr(default, k)}
    if "qk_rope_head_dim" in settings:  # multi-head latent attention: its rotary width is its head_dim
        settings["head_dim"] = settings["qk_rope_head_dim"]
    settings.update({k: None for k in DROPPED if hasattr(default, k)})
    try:
        model = getattr(transformers, model_class)(cls(**settings))
        model.save_pretrained(folder)
    except Exception as exc:  # noqa: BLE001
        return "cannot be built small: " + (str(exc).splitlines() or [type(exc).__name__])[0][:120]
    return ""


def stats(folder: Path, *options: str) -> tuple[dict | None, str]:
    """modelprof's report of ``folder`` (None and the error's last line on failure)."""
    result = subprocess.run([sys.executable, "-m", "modelprof", "stats", str(folder), *TOKENS, *options],
                            capture_output=True, text=True, timeout=600, check=False)
    if result.returncode:
        return None, (result.stderr.strip().splitlines() or ["?"])[-1].removeprefix("modelprof: error: ")[:200]
    return json.loads(result.stdout), ""


def sweep(key: str, model_class: str, root: Path, real: bool) -> str:
    """One row of the table for the model type ``key``."""
    try:
        return _sweep(key, model_class, root, real)
    except Exception as exc:  # noqa: BLE001 (a config class that cannot even be read small)
        return f"| {key} | cannot be built small: {type(exc).__name__} | | |"


def _sweep(key: str, model_class: str, root: Path, real: bool) -> str:
    folder = root / key
    why = build(key, model_class, folder)
    if why:
        return f"| {key} | {why} | | |"
    report, err = stats(folder, "--gpus", "2", "--tp", "2")
    if report is not None:
        p = report["parallel"]
        return (f"| {key} | counted | {', '.join(report['unsupported']) or 'none'} | "
                f"{p['held_tp_sharded']:,} split, {p['held_whole']:,} whole |")
    alone, _ = stats(folder)
    if alone is None:
        return f"| {key} | fails without --tp too (its small config): {err} | | |"
    own = ""
    if real:  # (a file, not -c: the spawned ranks import the main module again)
        (root / f"{key}_job.py").write_text(REAL_JOB)
        job = subprocess.run([sys.executable, str(root / f"{key}_job.py"), str(folder)], capture_output=True,
                             text=True, timeout=600, check=False)
        lines = [line for line in job.stdout.splitlines() if line.startswith(("ran", "fails"))]
        own = f"; transformers' own 2-rank job: {lines[0] if lines else 'no answer'}"
    return f"| {key} | fails with --tp only: {err}{own} | | |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+")
    parser.add_argument("--transformers", action="store_true", help="run transformers' own job where --tp fails")
    args = parser.parse_args()
    found = configs()
    keys = [k for k in found if not args.only or k in args.only]
    print("| model type | result (rank 0 of --gpus 2 --tp 2, a training step on meta) | uncounted ops | "
          "parameter elements held |")
    print("|---|---|---|---:|")
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(max_workers=2) as pool:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        for row in pool.map(lambda k: sweep(k, found[k], Path(scratch), args.transformers), keys):
            print(row, flush=True)


if __name__ == "__main__":
    main()
