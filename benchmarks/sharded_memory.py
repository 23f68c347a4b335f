"""One rank's counted peak against the resident-memory rise of that rank in a real 2-process gloo job (FSDP2,
AdamW), CPU: an MLP and a Llama decoder, each rank's peak resident memory read from the kernel (VmHWM, reset
before the steps), with glibc's mmap threshold left alone and held at 128 KiB.

    python benchmarks/sharded_memory.py

The counted rise is the rank's peak less what exists before the step (its parameter shards, buffers, inputs), as
`train_memory.py` takes it for one device; the real rise is the process's resident memory at its peak during two
AdamW steps less before them (after a warm-up forward).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))

#: The rise as the kernel saw it: the peak resident memory (VmHWM) reset just before the steps (``clear_refs``),
#: read after them, less the resident memory before (no sampling, so no peak shorter than a sample is missed).
SAMPLER = r"""
import json, re

def report_rise(work):
    def status(key):
        with open("/proc/self/status") as f:
            return int(re.search(key + r":\s+(\d+)", f.read()).group(1)) * 1024

    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    work()
    print(json.dumps({"base": base, "peak": status("VmHWM")}))
"""

from modelprof import count_costs  # noqa: E402
from modelprof.workload import Parallel, Training, Workload  # noqa: E402

MODELS = ("mlp", "decoder")
WORLD = 2


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class Mlp(nn.Module):
    """Six blocks of Linear(1024, 1024): 6.3M parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Block(1024) for _ in range(6)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Logits(nn.Module):
    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids).logits


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model (same weights in every process) and its input."""
    torch.manual_seed(0)
    if name == "mlp":
        return Mlp(), torch.randn(256, 1024)
    import transformers

    config = transformers.LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                                      num_attention_heads=8, num_key_value_heads=4, vocab_size=8000, use_cache=False)
    return Logits(transformers.LlamaForCausalLM(config)), torch.randint(0, 8000, (1, 256))


def units(model: nn.Module) -> list[nn.Module]:
    return list(model.blocks) if isinstance(model, Mlp) else list(model.lm.model.layers)


CHILD = r"""
import sys, types
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from sharded_memory import build, units
dist.init_process_group("gloo")
model, x = build(sys.argv[1])
for unit in units(model):
    fully_shard(unit)
fully_shard(model)
optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, foreach=False)
def run():
    for _ in range(2):
        out = model(x).sum()
        out.backward()
        del out
        optimizer.step()
        optimizer.zero_grad()
with torch.no_grad():  # warm-up: kernels, thread pools and the process group's buffers ready
    model(x)
model.reshard()  # the root keeps its parameters gathered after a forward; the step starts from the shards
report_rise(run)
sys.stdout.flush()
import os
os._exit(0)
"""


def real_rises(name: str, fixed_mmap: bool) -> list[int]:
    """Each rank's resident-memory rise over two steps of the real job."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    procs = []
    for rank in range(WORLD):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": str(WORLD), "OMP_NUM_THREADS": "1",
               **({"MALLOC_MMAP_THRESHOLD_": "131072"} if fixed_mmap else {})}
        procs.append(subprocess.Popen([sys.executable, "-c", SAMPLER + CHILD, name], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).parent))
    rises = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode:
            raise RuntimeError(err[-2000:])
        answer = json.loads(out.strip().splitlines()[-1])
        rises.append(answer["peak"] - answer["base"])
    return rises


def main() -> None:
    mib = 2**20
    print("| model | rank | counted peak | counted rise | real rise | real rise, mmap threshold fixed |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in MODELS:
        default, fixed = real_rises(name, False), real_rises(name, True)
        for rank in range(WORLD):
            model, x = build(name)
            m = count_costs(model, (x,), workload=Workload(Training(), parallel=Parallel(WORLD, "fsdp", rank))).memory
            rise = m.peak - m.parameters - m.buffers - m.inputs
            print(f"| {name} | {rank} | {m.peak / mib:,.1f} MiB | {rise / mib:,.1f} MiB | {default[rank] / mib:,.1f} "
                  f"MiB ({100 * (rise / default[rank] - 1):+.1f} %) | {fixed[rank] / mib:,.1f} MiB "
                  f"({100 * (rise / fixed[rank] - 1):+.1f} %) |")


if __name__ == "__main__":
    main()
