"""The golden reports: one saved JSON report per kind, made by the commands below on the bundled examples.

They pin the JSON form of every kind. ``tests/test_show.py`` reads each back, renders it again with
``modelprof show``, and (for the kinds that count, which are exact) checks that running the command today still
gives the same JSON. Regenerate them on purpose only, when the JSON form changes, from the repository root:

    python tests/golden/make.py            # all of them
    python tests/golden/make.py stats fit  # some of them

and say why in the commit (and bump ``SCHEMA_VERSION`` when a key changes meaning or goes away).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

WORKED = "examples/worked.py:Net"
LLAMA = "examples/configs/tiny-llama"
FAST = ("--reps", "3", "--warmup", "1", "--warmup-time", "0", "--quiet")

#: name -> the command that makes it (run from the repository root, ``--format json`` added)
COMMANDS: dict[str, tuple[str, ...]] = {
    "stats": ("stats", WORKED, "--shape", "3,500,500"),
    "train": ("stats", WORKED, "--shape", "3,64,64", "--train", "--optimizer", "adamw"),
    "generate": ("stats", LLAMA, "--generate", "--prompt-len", "16", "--new-tokens", "4"),
    "generate-long": ("stats", LLAMA, "--generate", "--prompt-len", "32", "--new-tokens", "4"),
    "crosscheck": ("stats", WORKED, "--shape", "3,64,64", "--crosscheck", "thop"),
    "convention": ("stats", WORKED, "--shape", "3,500,500", "--convention", "ptflops"),
    "parallel": ("stats", LLAMA, "--input", "input_ids=64:int64:1000", "--train", "--gpus", "4", "--tp", "2",
                 "--fsdp"),
    "pipeline": ("stats", LLAMA, "--input", "input_ids=64:int64:1000", "--batch", "4", "--train", "--pp", "2",
                 "--gpus", "8", "--tp", "2", "--fsdp", "--rank", "4"),
    "sweep": ("stats", WORKED, "--shape", "3,64,64", "--sweep", "batch=1,2,4"),
    "fit": ("fit", LLAMA, "--input", "input_ids=SEQ:int64:1000", "--seq", "64", "--memory", "16MiB"),
    "fit-gpus": ("fit", LLAMA, "--input", "input_ids=512:int64:1000", "--train", "--fsdp", "--memory", "11MiB"),
    "fit-gpus-pp": ("fit", LLAMA, "--input", "input_ids=64:int64:1000", "--train", "--batch", "4", "--fsdp", "--tp",
                    "2", "--pp", "2", "--memory", "3.5MiB"),
    "check": ("check", WORKED, "--shape", "3,500,500", "--max-flops", "19M", "--max-peak-memory", "1MB"),
    "compare": ("compare", "tests/golden/generate.json", "tests/golden/generate-long.json"),
    "bench": ("bench", WORKED, "--shape", "3,32,32", "--batch", "2", *FAST),
    "bench-layers": ("bench", WORKED, "--shape", "3,64,64", "--layers", "--peak-flops", "100G",
                     "--peak-bandwidth", "10GB", *FAST),
    "bench-generate": ("bench", LLAMA, "--generate", "--prompt-len", "8", "--new-tokens", "3", "--reps", "2"),
    "bench-gpus": ("bench", WORKED, "--shape", "3,32,32", "--batch", "2", "--train", "--gpus", "2", "--fsdp", *FAST),
    "calibrate": ("calibrate", "--seconds", "0.05"),
}

#: The kinds whose numbers are counted, not timed: running the command again gives the same JSON.
EXACT = ("stats", "train", "generate", "generate-long", "crosscheck", "convention", "parallel", "pipeline", "sweep",
         "fit", "fit-gpus", "fit-gpus-pp", "check", "compare")


def make(name: str, python: str = sys.executable, folder: Path = HERE) -> None:
    """Run ``name``'s command and save its JSON report as ``folder/name.json``."""
    argv = [python, "-m", "modelprof", *COMMANDS[name], "--format", "json", "-o", str(folder / f"{name}.json")]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1):  # check exits 1 when a limit is exceeded, as the golden one is
        raise SystemExit(f"{name}: {result.stderr.strip()}")


if __name__ == "__main__":
    for name in sys.argv[1:] or COMMANDS:
        make(name)
        print(f"wrote tests/golden/{name}.json")
