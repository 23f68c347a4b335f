"""One rank's counted peak against the resident-memory rise of that rank in a real gloo job (FSDP2, AdamW), CPU:
an MLP, a Llama decoder and a CNN with batch norm, on 2 and 4 processes, plain, with ``--amp`` (FSDP2's
mixed-precision policy: bfloat16 parameters, float32 gradient reduction) and with ``--checkpoint`` (each FSDP unit's
forward through non-reentrant ``torch.utils.checkpoint``); each rank's peak resident memory read from the kernel
(VmHWM, reset before the steps), with glibc's mmap threshold held at 128 KiB (and, for the plain 2-rank jobs, also
left alone).

    python benchmarks/sharded_memory.py                       # everything (about 20 minutes on 2 cores)
    python benchmarks/sharded_memory.py --models cnn --worlds 4 --variants amp

Each real job runs also with a reduce-scatter that holds no copy of its input (gloo's all-reduce in place, as NCCL's
reduce-scatter holds none): gloo's own clones the whole input first, a buffer the count of the job does not have;
and each ``--amp`` job also with PyTorch's oneDNN off, whose bfloat16 matrix products on the CPU hold scratch
buffers that are no tensors.

The counted rise is the rank's peak less what exists before the step (its parameter shards, buffers, inputs), as
`train_memory.py` takes it for one device; the real rise is the process's resident memory at its peak during two
AdamW steps less before them (after a warm-up forward).
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT))  # the CNN is the tests' (tests/test_parallel.py), larger

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
from modelprof.workload import Checkpointing, Parallel, Precision, Training, Workload  # noqa: E402
from tests.test_parallel import Cnn  # noqa: E402

MODELS = ("mlp", "decoder", "cnn")
WORLDS = (2, 4)
VARIANTS = ("plain", "amp", "checkpoint")


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
    if name == "cnn":
        return Cnn(width=64, depth=4, classes=100), torch.randn(16, 3, 64, 64)
    import transformers

    config = transformers.LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                                      num_attention_heads=8, num_key_value_heads=4, vocab_size=8000, use_cache=False)
    return Logits(transformers.LlamaForCausalLM(config)), torch.randint(0, 8000, (1, 256))


def units(model: nn.Module) -> list[nn.Module]:
    return list(model.blocks) if isinstance(model, Mlp | Cnn) else list(model.lm.model.layers)


CHILD = r"""
import sys, types
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import functools
import torch, torch.distributed as dist
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import checkpoint
from sharded_memory import build, units
dist.init_process_group("gloo")
if "onednn-off" in sys.argv[4:]:  # bfloat16 products without oneDNN's scratch buffers (which are no tensors)
    torch.backends.mkldnn.enabled = False
if "nocopy" in sys.argv[4:]:  # a reduce-scatter that holds no copy of its input, as NCCL's
    def reduce_scatter_in_place(output, input, op=dist.ReduceOp.SUM, group=None, async_op=False):
        dist.all_reduce(input, group=group)  # as gloo's own does (summing); FSDP drops the input afterwards
        output.copy_(input.chunk(dist.get_world_size(group))[dist.get_rank(group)])
    dist.reduce_scatter_single = reduce_scatter_in_place
model, x = build(sys.argv[1])
variant = sys.argv[2]
policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if variant == "amp"
          else MixedPrecisionPolicy())
for unit in units(model):
    if variant == "checkpoint":
        unit.forward = functools.partial(checkpoint, unit.forward, use_reentrant=False)
    fully_shard(unit, mp_policy=policy)
fully_shard(model, mp_policy=policy)
optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, foreach=False)
def step():
    out = model(x)  # held through the backward, as the count holds it
    out.sum().backward()
    del out
    optimizer.step()
    optimizer.zero_grad()
def run():
    for _ in range(2):
        step()
if sys.argv[3] == "tracker":  # PyTorch's FSDPMemTracker around a step of a running loop, instead of the kernel
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    step()
    tracker = FSDPMemTracker(model, optimizer)
    tracker.track_inputs((x,))
    with tracker:
        step()
    peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    print(json.dumps({"peak": peak["Total"], "parts": {str(k.value): v for k, v in peak.items() if k != "Total"}}))
else:
    with torch.no_grad():  # warm-up: kernels, thread pools and the process group's buffers ready
        model(x)
    model.reshard()  # the root keeps its parameters gathered after a forward; the step starts from the shards
    report_rise(run)
sys.stdout.flush()
import os
os._exit(0)
"""


def real_rises(name: str, world: int, variant: str, fixed_mmap: bool, mode: str = "rise",
               copy: bool = True, onednn: bool = True) -> list[dict]:
    """Each rank's resident-memory rise over two steps of the real job of ``world`` processes (``base`` and
    ``peak``), or with ``mode`` ``tracker`` its ``FSDPMemTracker`` peak over one step (``peak`` and ``parts``).
    Without ``copy``, each reduce-scatter is gloo's all-reduce in place (then the rank's chunk copied out), which
    holds no copy of its input, as NCCL's reduce-scatter does not: gloo's own clones its whole input first
    (``ProcessGroupGloo::reduce_scatter_tensor_coalesced``), a buffer the count of the job does not have. Without
    ``onednn``, PyTorch's oneDNN is off (``torch.backends.mkldnn.enabled``): the CPU's bfloat16 matrix products then
    hold no scratch buffers beside their outputs (with it, a 2048 × 2048 one raises the resident memory by 12.8 MiB
    for its 8 MiB output)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": str(world), "OMP_NUM_THREADS": "1",
               **({"MALLOC_MMAP_THRESHOLD_": "131072"} if fixed_mmap else {})}
        procs.append(subprocess.Popen([sys.executable, "-c", SAMPLER + CHILD, name, variant, mode,
                                       *(() if copy else ("nocopy",)), *(() if onednn else ("onednn-off",))],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                      cwd=Path(__file__).parent))
    rises = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode:
            raise RuntimeError(err[-2000:])
        rises.append(json.loads(out.strip().splitlines()[-1]))
    return rises


def counted_rise(name: str, world: int, variant: str, rank: int) -> tuple[int, int]:
    """The rank's counted peak and rise (the peak less its parameter shards, buffers and inputs)."""
    model, x = build(name)
    workload = Workload(Training(), Precision(amp=variant == "amp"),
                        Checkpointing(("auto",) if variant == "checkpoint" else ()), Parallel(world, "fsdp", rank))
    m = count_costs(model, (x,), workload=workload).memory
    return m.peak, m.peak - m.parameters - m.buffers - m.inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--worlds", nargs="+", type=int, default=WORLDS)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    args = parser.parse_args()
    mib = 2**20

    def versus(counted: int, real: int) -> str:
        return f"{real / mib:,.1f} MiB ({100 * (counted / real - 1):+.1f} %)"

    print("| model | job | rank | counted peak | FSDPMemTracker's peak, real run | the same, no copy in the "
          "reduce-scatter | counted rise | real rise, mmap threshold fixed | the same, no copy in the reduce-scatter "
          "| the same, oneDNN off too | real rise, threshold left alone |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        for world in args.worlds:
            for variant in args.variants:
                if name == "cnn" and variant == "amp":  # PyTorch's own step fails: FSDP's bfloat16 policy casts
                    continue  # batch norm's weights but not its float32 running statistics (the count says so too)
                tracked = real_rises(name, world, variant, False, "tracker")
                nocopy = real_rises(name, world, variant, False, "tracker", copy=False)
                fixed = real_rises(name, world, variant, True)
                fixed_nocopy = real_rises(name, world, variant, True, copy=False)
                default = real_rises(name, world, variant, False) if variant == "plain" and world == 2 else None
                bare = real_rises(name, world, variant, True, copy=False, onednn=False) if variant == "amp" else None
                for rank in range(world):
                    peak, rise = counted_rise(name, world, variant, rank)
                    alone = versus(rise, default[rank]["peak"] - default[rank]["base"]) if default else ""
                    onednn_off = versus(rise, bare[rank]["peak"] - bare[rank]["base"]) if bare else ""
                    print(f"| {name} | {world} ranks, {variant} | {rank} | {peak / mib:,.1f} MiB | "
                          f"{versus(peak, tracked[rank]['peak'])} | {versus(peak, nocopy[rank]['peak'])} | "
                          f"{rise / mib:,.1f} MiB | "
                          f"{versus(rise, fixed[rank]['peak'] - fixed[rank]['base'])} | "
                          f"{versus(rise, fixed_nocopy[rank]['peak'] - fixed_nocopy[rank]['base'])} | {onednn_off} | "
                          f"{alone} |",
                          flush=True)
                print(f"<!-- {name} {world} {variant} FSDPMemTracker rank 0: {tracked[0]['parts']} -->", flush=True)


if __name__ == "__main__":
    main()
