"""Activation checkpointing (``--checkpoint``): a prepare transform that trades saved activations for recomputation,
held to PyTorch's MemTracker on the same checkpointed step and to the forward it recomputes."""

import functools
import json
import sys
import types

import pytest
import torch
from fixtures import RESNET18, resnet18
from memtracker import memtracker_peak
from torch.utils.checkpoint import checkpoint

import modelprof
from modelprof import Checkpointing, Training, Workload
from modelprof.errors import UsageError
from modelprof.prepare.checkpoint import checkpointed_modules


def step(checkpoint: tuple[str, ...] = ()) -> Workload:
    return Workload(Training(), checkpoint=Checkpointing(checkpoint))


def test_the_backward_recomputes_exactly_the_checkpointed_forwards():
    torch.manual_seed(0)
    model, x = resnet18(), torch.randn(2, 3, 32, 32)
    plain = modelprof.count_costs(model, (x,), workload=step())
    checkpointed = modelprof.count_costs(model, (x,), workload=step(("auto",)))
    assert not checkpointed.unsupported
    # auto is the repeated block, BasicBlock: every row under layer1..layer4 runs its forward twice
    blocks = sum(r.flops for r in plain.layers if r.name.startswith("layer"))
    assert checkpointed.total.bwd_flops - plain.total.bwd_flops == blocks
    assert checkpointed.total.flops == plain.total.flops  # the forward itself is the same
    assert checkpointed.memory.saved < plain.memory.saved  # the blocks keep their inputs only
    # a forward run again is not another call
    assert {r.name: r.calls for r in checkpointed.layers} == {r.name: r.calls for r in plain.layers}
    assert all("forward" not in vars(m) for m in model.modules())  # the model is left as it was


def test_the_checkpointed_peak_is_memtrackers():
    torch.manual_seed(0)
    model, x = resnet18(), torch.randn(4, 3, 32, 32)
    counted = modelprof.count_costs(model, (x,), workload=step(("BasicBlock",))).memory.peak

    def checkpointed(copy: torch.nn.Module) -> None:  # the same checkpointing, applied by hand
        for module in checkpointed_modules(copy, ("BasicBlock",)):
            module.forward = functools.partial(checkpoint, module.forward, use_reentrant=False)

    assert abs(counted / memtracker_peak(model, (x,), prepare=checkpointed) - 1) < 0.02


def test_checkpoint_options_through_the_cli(run):
    code, out, err = run("stats", RESNET18, "--shape", "3,32,32", "--batch", "2", "--train", "--checkpoint",
                         "auto", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["total"]["bwd_flops"] > 0
    code, out, err = run("bench", RESNET18, "--shape", "3,32,32", "--batch", "2", "--train", "--checkpoint", "auto",
                         "--reps", "2", "--warmup", "1", "--warmup-time", "0", "--quiet", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["environment"]["checkpoint"] == ["auto"]  # the timed steps are checkpointed too
    code, out, err = run("stats", RESNET18, "--shape", "3,32,32", "--checkpoint", "auto")
    assert code == 2 and "add --train" in err and err.count("\n") == 1
    code, out, err = run("stats", RESNET18, "--shape", "3,32,32", "--train", "--checkpoint", "Nope")
    assert code == 2 and "no module of class Nope" in err and err.count("\n") == 1


def test_checkpointing_is_part_of_the_workload():
    workload = step(("auto",))
    assert Workload.from_dict(json.loads(json.dumps(workload.to_dict()))) == workload
    with pytest.raises(UsageError, match="add --train"):
        Workload(checkpoint=Checkpointing(("auto",)))
    with pytest.raises(UsageError, match="no repeated block"):
        checkpointed_modules(torch.nn.Sequential(torch.nn.Linear(2, 2)), ("auto",))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_transformers_training_step_keeps_no_kv_cache(device):
    """A transformers decoder's training step runs with its config's ``use_cache`` off (on again afterwards), as
    training does: with it on, the output would hold a cache of every layer's keys and values through the optimizer's
    step, and each forward the checkpointed backward recomputes would add its keys and values again. So after the
    backward (the optimizer's phase) checkpointing leaves exactly what the plain step leaves alive: parameters,
    gradients, the logits and the loss. On meta (and the fake tensors that stand in for meta ones under ``--amp``)
    the counts are the CPU's, op for op."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128, vocab_size=1000)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config)
    ids = torch.randint(0, 1000, (2, 64), device=device)
    reports = {name: modelprof.count_costs(model, (), {"input_ids": ids}, workload=step(checkpoint))
               for name, checkpoint in (("plain", ()), ("checkpointed", ("auto",)))}
    assert model.config.use_cache is True
    optimizer = {name: r.memory.phase_peaks["optimizer"] for name, r in reports.items()}
    assert optimizer["plain"] == optimizer["checkpointed"]
    if device == "meta":
        cpu_ids = torch.randint(0, 1000, (2, 64))  # the values make no difference to any count
        on_cpu = modelprof.count_costs(transformers.LlamaForCausalLM(config), (), {"input_ids": cpu_ids},
                                       workload=step(("auto",)))
        assert on_cpu.total.values == reports["checkpointed"].total.values
        assert on_cpu.memory.phase_peaks == reports["checkpointed"].memory.phase_peaks
