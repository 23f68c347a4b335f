"""Peak memory of a training step: modelprof against PyTorch's MemTracker and against what really happens.

    python benchmarks/train_memory.py

For ResNet-50 (batch 32, 224x224) and a BERT-base encoder (batch 16, 128 tokens), a training step (forward,
``sum(output)`` as the loss, backward, AdamW with PyTorch's single-tensor implementation) as it runs in a training
loop: two steps are run, the second with the optimizer state the first one made, and the peak is over both:

* modelprof: ``count_train_step`` on CPU, the peak of live tensor memory;
* MemTracker (``torch.distributed._tools.mem_tracker``) on the same step: the peak of all its categories;
* measured: a child process builds the model and its inputs, runs one forward under ``no_grad`` to warm up its
  kernels and thread pools, then samples its resident memory (``/proc/self/statm``) every millisecond through the
  training step; the rise of the peak over the resident memory just before the step, against modelprof's peak less
  what already existed (parameters, buffers, inputs).
Then the same under `--amp`: counted on the meta device (fake CPU tensors under CPU autocast, bfloat16), against
MemTracker and the child on a real CPU step whose forward and loss run under autocast.
Goals: within 5 % of MemTracker, within 10 % of the measured rise. Also: the 70B decoder's training step on the
meta device, its time and this process's peak memory (goal: at most 30 s and 2 GiB).
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from memtracker import memtracker_peak  # noqa: E402
from rss import rise_in_child  # noqa: E402

from modelprof.counting.train import count_train_step  # noqa: E402
from modelprof.workload import Precision  # noqa: E402

CHILD = r"""
import sys, types
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import torch
from train_memory import build
model, x = build(sys.argv[1])
amp = sys.argv[2] == "amp"
optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, foreach=False)
def run():
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
            out = out if isinstance(out, torch.Tensor) else out.last_hidden_state
            out = out.sum()
        out.backward()
        del out
        optimizer.step()
        optimizer.zero_grad()
with torch.no_grad():  # warm-up: kernels and thread pools ready; no gradient or optimizer state exists yet
    model(x)
report_rise(run)
"""


META_70B = r"""
import sys, time
sys.path.insert(0, sys.argv[1] + "/examples")
import torch
from decoder import llama_70b
from modelprof.counting.train import count_train_step
started = time.perf_counter()
with torch.device("meta"):
    model = llama_70b()
report = count_train_step(model, (torch.randint(0, 32000, (1, 4096), device="meta"),))
seconds = time.perf_counter() - started
m = report.memory
gib = 2**30
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a large process starts with its peak
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) * 1024
print(f"70B decoder on meta, training step at batch 1 × 4096: {seconds:.1f} s, peak resident memory "
      f"{hwm / gib:.2f} GiB. Predicted step: peak "
      f"{m.peak / gib:,.1f} GiB = parameters {m.parameters / gib:,.1f} + gradients {m.gradients / gib:,.1f} + "
      f"AdamW state {m.optimizer / gib:,.1f} + the rest at the peak (during {m.peak_phase} of {m.peak_row}); "
      f"saved activations {m.saved / gib:,.1f} GiB")
"""


def build(name: str):
    torch.manual_seed(0)
    if name == "resnet50":
        from resnet import resnet50

        return resnet50(), torch.randn(32, 3, 224, 224)
    import transformers

    return transformers.BertModel(transformers.BertConfig()), torch.randint(0, 30000, (16, 128))


def loss(output, *inputs):
    out = output if isinstance(output, torch.Tensor) else output.last_hidden_state
    return out.sum()


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| model | modelprof peak | MemTracker peak | gap | modelprof: peak less parameters and inputs "
          "| measured RSS rise (gap) | measured, glibc mmap threshold 128 KiB (gap) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    mib = 2**20
    models = (("resnet50", "ResNet-50, batch 32, 224×224"), ("bert", "BERT-base, batch 16, 128 tokens"))
    cases = [(name, label, amp) for amp in (False, True) for name, label in models]
    for name, label, amp in cases:
        model, x = build(name)
        if amp:  # counted on the meta device (fake CPU tensors under CPU autocast), measured on a real CPU step
            with torch.device("meta"):
                meta, _ = build(name)
            report = count_train_step(meta, (torch.empty_like(x, device="meta"),), loss=loss,
                                          precision=Precision(amp=True))
            label += ", `--amp` (bfloat16) on meta"
        else:
            report = count_train_step(model, (x,), loss=loss)
        m = report.memory
        reference = memtracker_peak(model, (x,), amp=amp, loss=loss)
        # the steps create the gradients and the optimizer's state, as the measured ones do: the rise is the
        # peak less what existed before it
        rise = m.peak - m.parameters - m.buffers - m.inputs
        real, fixed = (rise_in_child(CHILD, [name, "amp" if amp else "fp32"], f) for f in (False, True))
        print(f"| {label} | {m.peak / mib:,.1f} MiB | {reference / mib:,.1f} MiB | "
              f"{100 * (m.peak / reference - 1):+.2f} % | {rise / mib:,.1f} MiB | {real / mib:,.1f} MiB "
              f"({100 * (rise / real - 1):+.1f} %) | {fixed / mib:,.1f} MiB ({100 * (rise / fixed - 1):+.1f} %) |")
        del model, x
    done = subprocess.run([sys.executable, "-c", META_70B, str(ROOT)], capture_output=True, text=True, check=True)
    print("\n" + done.stdout.strip())

if __name__ == "__main__":
    main()
