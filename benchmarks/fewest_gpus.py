"""The fewest H100s for full fine-tuning of Llama-2 7B, 13B and 70B at 4,096 tokens: `modelprof fit` without
--gpus, one training step of rank 0 counted on meta (AdamW, float32 master weights, bfloat16 compute through FSDP2's
mixed-precision policy, batch 1 per GPU), for four layouts: FSDP, FSDP with activation checkpointing of every
decoder layer, FSDP × TP 8, and the same with sequence parallelism; with --pipelined, 3D layouts (FSDP or ZeRO-1 ×
TP × PP, checkpointed, microbatches of 1, one a stage: --batch is then a step's per data-parallel rank). Each fit
runs the real command line in a child process.

    python benchmarks/fewest_gpus.py -o /tmp/fewest.md
    python benchmarks/fewest_gpus.py --pipelined -o /tmp/fewest-3d.md
    python benchmarks/fewest_gpus.py --only "FSDP × TP 8 + SP" -o /tmp/fewest-sp.md   # one layout
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("llama-2-7b", "llama-2-13b", "llama-2-70b")
LAYOUTS = {"FSDP": ["--fsdp"], "FSDP + checkpointing": ["--fsdp", "--checkpoint", "auto"],
           "FSDP × TP 8": ["--fsdp", "--tp", "8"], "FSDP × TP 8 + SP": ["--fsdp", "--tp", "8", "--sp"]}
#: ``--pipelined``: 3D layouts, their --batch a step's per data-parallel rank (microbatches of 1, one a stage)
PIPELINED = {"FSDP × TP 4 × PP 2 + checkpointing": ["--fsdp", "--tp", "4", "--pp", "2", "--checkpoint", "auto",
                                                   "--batch", "2"],
             "FSDP × TP 8 × PP 4 + checkpointing": ["--fsdp", "--tp", "8", "--pp", "4", "--checkpoint", "auto",
                                                   "--batch", "4"],
             "FSDP × TP 8 + SP × PP 4 + checkpointing": ["--fsdp", "--tp", "8", "--sp", "--pp", "4", "--checkpoint",
                                                        "auto", "--batch", "4"],
             # Megatron-DeepSpeed's layout: ZeRO-1 (the optimizer state sharded) in place of FSDP
             "ZeRO-1 × TP 8 × PP 4 + checkpointing": ["--zero", "1", "--tp", "8", "--pp", "4", "--checkpoint",
                                                     "auto", "--batch", "4"]}


def fewest(model: str, layout: list[str], memory: str) -> tuple[dict, float]:
    """The fit report's ``gpus`` block, and the seconds the command took."""
    command = [sys.executable, "-m", "modelprof", "fit", str(ROOT / "examples" / "configs" / model), "--input",
               "input_ids=4096:int64:32000", "--train", "--amp", "--dtype", "float32", "--batch", "1", "--memory",
               memory, *layout, "--format", "json"]  # (a layout's own --batch comes later and wins)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        return {"error": result.stderr.strip().removeprefix("modelprof: error: ")}, seconds
    return json.loads(result.stdout)["gpus"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", default="H100")
    parser.add_argument("-o", "--output", default="-")
    parser.add_argument("--pipelined", action="store_true", help="the 3D layouts (--pp with --tp) instead")
    parser.add_argument("--only", action="append", metavar="LAYOUT", help="only this layout (repeatable)")
    args = parser.parse_args()
    layouts = {name: layout for name, layout in (PIPELINED if args.pipelined else LAYOUTS).items()
               if not args.only or name in args.only}
    lines = [f"| model | layout | fewest GPUs ({args.memory}) | rank 0's peak there [GiB] | peaks counted "
             "(GPUs: GiB) | fit [s] |", "|---|---|---:|---:|---|---:|"]
    for model in MODELS:
        for name, layout in layouts.items():
            found, seconds = fewest(model, layout, args.memory)
            if "error" in found:
                lines.append(f"| {model} | {name} | — ({found['error']}) | | | {seconds:.0f} |")
            else:
                peaks = ", ".join(f"{p['gpus']}: {p['peak'] / 2**30:.1f}" for p in found["peaks"])
                lines.append(f"| {model} | {name} | {found['fewest']} | {found['peak_at_fewest'] / 2**30:.1f} | "
                             f"{peaks} | {seconds:.0f} |")
            print(lines[-1], file=sys.stderr)
    text = "\n".join(lines) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
