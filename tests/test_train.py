"""stats --train: the backward charged to the right layers, its matrix products equal to FlopCounterMode's, the
optimizer step by hand, and the model left exactly as it was."""

import copy
import json
import sys
import types

import pytest
import torch
from fixtures import EXAMPLES, WORKED, resnet18
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import modelprof
from modelprof.counting.formulas import FORMULAS, Cost
from modelprof.counting.train import count_train_step
from modelprof.workload import Precision, Training, Workload

aten = torch.ops.aten


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_linear_backward_and_optimizer_by_hand():
    report = count_train_step(mlp(), (torch.randn(3, 4),), optimizer="sgd")
    rows = {r.name: r for r in report.layers}
    # layer 0 (4 -> 8, batch 3): the input needs no gradient, so grad_weight (8x3 @ 3x4 = 96 MACs) and
    # grad_bias (3*8 = 24 additions) = 120
    assert rows["0"].bwd_flops == 96 + 24
    # ReLU: one op per element of its 3x8 gradient
    assert rows["1"].bwd_flops == 24
    # layer 2 (8 -> 2): grad_input 3x2 @ 2x8 = 48, grad_weight 2x3 @ 3x8 = 48, grad_bias 3*2 = 6
    assert rows["2"].bwd_flops == 48 + 48 + 6
    # SGD: param.add_(grad, alpha=-lr), one op per parameter: 4*8 + 8 + 8*2 + 2 = 58
    assert rows["(optimizer)"].opt_flops == 58 and rows["(optimizer)"].type == "SGD step"
    assert report.unsupported == {} and report.phases == ("forward", "backward", "optimizer")
    # AdamW: per element lerp 1, mul + addcmul 3, sqrt, div, add 3, addcdiv 2, decay mul 1 = 10, plus one
    # step counter increment per parameter tensor (4): 58*10 + 4 = 584
    assert count_train_step(mlp(), (torch.randn(3, 4),)).total.opt_flops == 584


def products_only() -> dict:
    """modelprof's formulas for matrix products alone (without convolution's bias gradient, which
    FlopCounterMode leaves out); everything else counts 0."""

    def conv_backward(args, kwargs, out):
        mask = args[10]
        return Cost(flops=FORMULAS[aten.convolution_backward](args, kwargs, out).flops
                    - (args[0].numel if mask[2] else 0))

    keep = {op: FORMULAS[op] for op in (aten.mm, aten.bmm, aten.addmm, aten.baddbmm, aten.convolution,
                                        aten._grouped_mm)}
    keep[aten.convolution_backward] = conv_backward
    return {op: keep.get(op, lambda a, k, o: Cost()) for op in FORMULAS}


def flop_counter_backward(model, args, kwargs=None):
    """FlopCounterMode's backward FLOPs, total and per module: forward + backward counted, less the forward."""
    kwargs = kwargs or {}
    model = copy.deepcopy(model).train()
    forward, both = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with forward:
        model(*args, **kwargs)
    with both:
        out = model(*args, **kwargs)
        sum(t.sum() for t in ([out] if isinstance(out, torch.Tensor) else out.values() if isinstance(out, dict)
                              else out) if isinstance(t, torch.Tensor) and t.is_floating_point()).backward()
    per_module = {name: sum(ops.values()) - sum(forward.get_flop_counts().get(name, {}).values())
                  for name, ops in both.get_flop_counts().items()}
    return both.get_total_flops() - forward.get_total_flops(), per_module


def test_resnet_backward_products_equal_flop_counter_mode():
    model = resnet18(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    ours = count_train_step(model, (x,), formulas=products_only())
    total, per_module = flop_counter_backward(model, (x,))
    assert 2 * ours.total.bwd_flops == total
    # per block (FlopCounterMode names modules by class path, "ResNet.layer2.0", and counts each module with
    # everything it called). Inside a block with a downsample branch its backward tracker charges the branch's
    # gradient to conv1 as well, so leaf rows are compared only on the branch-free stem and head.
    for row in ours.fold(2).layers:
        if row.name.startswith("layer") or row.name in ("conv1", "fc"):
            assert 2 * row.bwd_flops == per_module[f"ResNet.{row.name}"], row.name


def test_llama_style_backward_products_equal_flop_counter_mode():
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128, vocab_size=1000,
                                      max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config._attn_implementation = "eager"  # matmul attention: FlopCounterMode counts CPU SDPA as 0
    model = transformers.LlamaForCausalLM(config)
    tokens = torch.randint(3, 1000, (2, 16))
    ours = count_train_step(model, (tokens,), formulas=products_only(),
                            loss=lambda output, *inputs: output.logits.sum())
    total, _ = flop_counter_backward(model, (tokens,))
    assert 2 * ours.total.bwd_flops == total
    assert count_train_step(model, (tokens,), loss=lambda o, *i: o.logits.sum()).unsupported == {}


def test_model_left_exactly_as_before():
    model = resnet18(num_classes=10)
    model.eval()
    state = copy.deepcopy(model.state_dict())
    count_train_step(model, (torch.randn(2, 3, 32, 32),))
    assert not model.training and all(not m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()  # parameters (lr 0) and BN running statistics (restored) unchanged
    assert all(torch.equal(state[k], after[k]) for k in state)


def test_stats_train_through_the_cli(run, tmp_path):
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--train", "--optimizer", "sgd", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["phases"] == ["forward", "backward", "optimizer"]
    rows = {r["name"]: r for r in data["layers"]}
    # conv1 (3 -> 2, k7, s2, p3, no bias) on 3x32x32: the input needs no gradient; grad_weight has the forward's
    # 16*16*2 * 7*7*3 = 75,264 MACs
    assert rows["conv1"]["bwd_flops"] == 16 * 16 * 2 * 7 * 7 * 3
    assert rows["(optimizer)"]["opt_flops"] == 298  # SGD: one op per parameter
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--train")
    assert code == 0 and "Training step: forward" in out and "Bwd Flops" in out
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--optimizer", "sgd")
    assert code == 2 and "add --train" in err
    (tmp_path / "lossmod.py").write_text("def first(output, *inputs):\n    return output[0, 0].sum()\n")
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--train", "--loss",
                         f"{tmp_path / 'lossmod.py'}:first", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["layers"][-2]["type"] == "first"  # the (loss) row is named after the function


def test_train_on_meta_device(run):
    code, out, err = run("stats", str(EXAMPLES / "decoder.py") + ":Decoder", "--device", "meta", "--input",
                         "64:int64:1000", "--train", "--depth", "0", "--format", "json", "--kwargs",
                         '{"vocab_size": 1000, "dim": 64, "layers": 2, "heads": 4, "kv_heads": 2}')
    assert code == 0, err
    total = json.loads(out)["total"]
    assert total["bwd_flops"] > total["flops"] > 0 and json.loads(out)["unsupported"] == {}


def test_memory_by_category_by_hand():
    report = count_train_step(mlp(), (torch.randn(3, 4),), optimizer="adam")
    memory = report.memory
    # parameters: (4*8 + 8 + 8*2 + 2) = 58 floats = 232 bytes; the input 3x4 floats = 48 bytes
    assert (memory.parameters, memory.buffers, memory.inputs) == (232, 0, 48)
    # a gradient per parameter (232); Adam keeps exp_avg and exp_avg_sq (2 * 232) and a float32 step per
    # parameter tensor (4 * 4): 480
    assert (memory.gradients, memory.optimizer) == (232, 480)
    # saved for the backward: the first Linear saves its input (an input, not an activation) and its weight (a
    # parameter); the ReLU saves its 3x8 output (96 bytes), which the second Linear saves too (counted once)
    rows = {r.name: r for r in report.layers}
    assert memory.saved == 96 and rows["1"].saved == 96 and rows["2"].saved == 0


def memtracker_peak(model, args, train, amp=False):
    """PyTorch's MemTracker on the same step: the peak of every category together. With ``amp`` the forward (and
    the loss) run under CPU autocast, the backward and the optimizer step outside it."""
    from torch.distributed._tools.mem_tracker import MemTracker

    model = copy.deepcopy(model)
    tracker = MemTracker()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp)
    if not train:
        tracker.track_external(model, *args)
        with tracker, torch.inference_mode(), autocast:
            model.eval()(*args)
        return sum(v["Total"] for v in tracker.get_tracker_snapshot("peak").values())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, foreach=False)
    tracker.track_external(model, optimizer, *args)
    with tracker:
        for step in range(2):  # the second step runs with the optimizer state the first one made, as a loop does
            if step:
                tracker.reset_mod_stats()
            with autocast:
                loss = model.train()(*args).sum()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return sum(v["Total"] for v in tracker.get_tracker_snapshot("peak").values())


@pytest.mark.parametrize(("train", "batch"), [(False, 4), (True, 4), (True, 32)])
def test_peak_memory_agrees_with_memtracker(train, batch):
    from modelprof.counting.api import count_costs

    model = resnet18(num_classes=10)
    x = torch.randn(batch, 3, 64, 64)
    report = count_train_step(model, (x,)) if train else count_costs(model, (x,))
    reference = memtracker_peak(model, (x,), train)
    assert abs(report.memory.peak - reference) <= 0.05 * reference  # goal: within 5 %


#: MemTracker's categories -> modelprof's parts of the peak (its ``Other`` holds the inputs given to track_external)
MEMTRACKER_PARTS = {"Parameter": "parameters", "Buffer": "buffers", "Other": "inputs", "Gradient": "gradients",
                    "Optstate": "optimizer state", "Activation": "activations", "Temp": "temporary"}


def memtracker_peak_parts(model, args):
    """What PyTorch's MemTracker says the peak of a running AdamW loop's step (the second: the first made the
    optimizer state) is made of, in modelprof's names; the output and the loss held to the end of the step, as a
    loop's ``loss = ...`` does."""
    from torch.distributed._tools.mem_tracker import MemTracker

    model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, foreach=False)
    tracker = MemTracker()
    tracker.track_external(model, optimizer, *args)
    with tracker:
        for step in range(2):
            if step:
                tracker.reset_mod_stats()
            output = model.train()(*args)
            loss = output.sum()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            del output, loss
    snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))
    parts = {MEMTRACKER_PARTS[str(kind.value)]: size for kind, size in snapshot.items() if kind != "Total" and size}
    return parts, snapshot["Total"]


@pytest.mark.parametrize("name", ["mlp", "resnet18"])
def test_the_peak_is_made_of_what_memtracker_says(name):
    """The peak's make-up (parameters, buffers, inputs, gradients, optimizer state, activations, temporaries) is
    MemTracker's on the same AdamW step, byte for byte: gradients as soon as autograd computes them (its two
    gradient hooks), everything the optimizer's step makes as its state, as MemTracker counts them."""
    model, x = (mlp(), torch.randn(3, 4)) if name == "mlp" else (resnet18(num_classes=10), torch.randn(4, 3, 64, 64))
    report = count_train_step(model, (x,), optimizer="adamw")
    parts, total = memtracker_peak_parts(model, (x,))
    assert report.memory.peak == total == sum(report.memory.peak_parts.values())
    assert {kind: size for kind, size in report.memory.peak_parts.items() if size} == parts


def test_amp_memory_by_hand():
    report = count_train_step(mlp(), (torch.randn(3, 4),), optimizer="adam", precision=Precision(amp=True))
    memory, rows = report.memory, {r.name: r for r in report.layers}
    # CPU autocast runs each Linear in bfloat16 (2 bytes): the first Linear saves its input's 3x4 bfloat16 copy
    # (24 bytes; its weight's copy is not saved, the input needing no gradient); the ReLU saves its 3x8 bfloat16
    # output (48), which the second Linear saves too (counted once), with the 2x8 bfloat16 copy of its weight (32)
    assert (rows["0"].saved, rows["1"].saved, rows["2"].saved) == (24, 48, 32) and memory.saved == 104
    # the parameters stay float32, and so do their gradients (232 bytes, cast back by autograd) and Adam's state
    # (2 * 232 + 4 step counters * 4 = 480), as without autocast
    assert (memory.parameters, memory.gradients, memory.optimizer) == (232, 232, 480)
    assert report.dtype == "float32, autocast bfloat16"


@pytest.mark.parametrize("train", [False, True])
def test_amp_peak_on_meta_agrees_with_memtracker_on_cpu(train):
    from modelprof.counting.api import count_costs

    model = resnet18(num_classes=10)
    x = torch.randn(4, 3, 64, 64)
    with torch.device("meta"):
        meta = resnet18(num_classes=10)
    args = (torch.empty(4, 3, 64, 64, device="meta"),)
    amp = Precision(amp=True)
    report = (count_train_step(meta, args, precision=amp) if train
              else count_costs(meta, args, workload=Workload(precision=amp)))
    reference = memtracker_peak(model, (x,), train, amp=True)
    assert abs(report.memory.peak - reference) <= 0.05 * reference  # goal: within 5 %
    assert report.device == "meta" and all(p.device.type == "meta" for p in meta.parameters())  # put back


def test_memory_budgets_through_check(run):
    # the worked example's parameters alone are 298 floats = 1,192 bytes, so a 1 KB peak limit must fail
    code, out, err = run("check", WORKED, "--shape", "3,32,32", "--max-peak-memory", "1KB")
    assert code == 1 and out.startswith("FAIL  peak memory")
    code, out, err = run("check", WORKED, "--shape", "3,32,32", "--max-peak-memory", "1GB",
                         "--max-train-memory", "1GB")
    assert code == 0 and "pass  training-step peak memory" in out, err
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--train")
    assert "Memory: parameters 1.16KiB" in out and "saved activations" in out


def test_fit_largest_batch_by_hand(run):
    # fixtures.Hungry: x (N, 1024) float32 -> x.repeat(1, 4096) (N x 16 MiB) -> .sum(dim=1) (N floats).
    # Peak while the sum runs: input N*4096 + repeat N*16,777,216 + sum N*4 = N * 16,781,316 bytes, nothing fixed.
    # 256 MiB = 268,435,456: 15 samples need 251,719,740, 16 need 268,501,056 -> 15
    code, out, err = run("fit", "fixtures:Hungry", "--shape", "1024", "--memory", "256MiB", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["kind"] == "fit" and len(data["fits"]) == 1
    data = data["fits"][0]
    assert data["max_batch"] == 15 and data["peak_at_max"] == 15 * 16_781_316
    assert data["fixed"] == 0 and data["per_sample"] == 16_781_316
    code, out, err = run("fit", "fixtures:Hungry", "--shape", "1024", "--memory", "H100", "--format", "json")
    # 80 GiB = 85,899,345,920 // 16,781,316 = 5,118
    assert code == 0 and json.loads(out)["fits"][0]["max_batch"] == 85_899_345_920 // 16_781_316
    assert json.loads(out)["fits"][0]["memory_source"] == "H100's memory"
    code, out, err = run("fit", "fixtures:Hungry", "--shape", "1024", "--memory", "lots")
    assert code == 2 and "neither a size" in err


def test_fit_training_step_fits_its_answer():
    from modelprof.loading.source import Device, Inputs, InputSpec, ModelSource
    from modelprof.planning.fit import fit_batch, phase_peaks
    from modelprof.workload import Training, Workload

    source = ModelSource(str(EXAMPLES / "resnet.py") + ":resnet18", Inputs(specs=(InputSpec((3, 32, 32)),)))
    report = fit_batch(source, 512 * 2**20, Workload(Training()))
    meta = ModelSource(source.target, source.inputs, device=Device.META)
    # the answer's exact peak fits, and one more sample does not
    assert report.peak_at_max <= 512 * 2**20
    assert max(phase_peaks(meta, Workload(Training()), report.max_batch + 1).values()) > 512 * 2**20


def test_bench_train_times_training_steps_and_leaves_the_model(run):
    code, out, err = run("bench", WORKED, "--shape", "3,16,16", "--train", "--optimizer", "sgd", "--reps", "2",
                         "--warmup", "1", "--warmup-time", "0", "--quiet", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["environment"]["train"] is True and data["environment"]["optimizer"] == "sgd"
    assert len(data["sweep"][0]["samples_ms"]) == 2
    code, out, err = run("bench", WORKED, "--shape", "3,16,16", "--train", "--layers")
    assert code == 2 and "drop --train or --layers" in err


def test_timed_training_steps_leave_the_model_unchanged():
    from modelprof.timing.measure import TimingSettings, measure

    model = resnet18(num_classes=10).eval()
    state = copy.deepcopy(model.state_dict())
    measure(model, (torch.randn(2, 3, 32, 32),), {}, 2, "cpu", TimingSettings(warmup_calls=1, warmup_seconds=0,
                                                                              reps=2), workload=Workload(Training()))
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_amp_through_the_cli(run):
    resnet = str(EXAMPLES / "resnet.py") + ":resnet18"
    code, out, err = run("stats", resnet, "--shape", "3,32,32", "--batch", "2", "--device", "meta", "--train",
                         "--amp", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["device"], data["dtype"]) == ("meta", "float32, autocast bfloat16")
    # the float32 parameters, their float32 gradients: autocast changes neither
    assert data["memory"]["gradients"] == data["memory"]["parameters"] == 11_689_512 * 4
    code, out, err = run("stats", resnet, "--shape", "3,32,32", "--amp", "--crosscheck", "thop")
    assert code == 2 and "--amp" in err and out == ""
    # activations in 16 bits: more samples fit the same memory than in float32
    fits = {}
    for amp in ((), ("--amp",)):
        code, out, err = run("fit", resnet, "--shape", "3,32,32", "--memory", "1GiB", "--train", *amp, "--format",
                             "json")
        assert code == 0, err
        fits[bool(amp)] = json.loads(out)["fits"][0]
    assert fits[True]["amp"] and not fits[False]["amp"]
    assert fits[True]["max_batch"] > fits[False]["max_batch"]


class MaskedAttention(nn.Module):
    """Scaled dot-product attention with a boolean mask, as many encoders call it."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96)

    def forward(self, x):
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 4, 8).permute(2, 0, 3, 1, 4)
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).tril()
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class LearnedMask(MaskedAttention):
    """Attention whose additive mask is learned (Doge's dynamic mask): the CPU's fused kernel has no gradient for a
    mask, so the CPU runs the math."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(4, 64, 64))

    def forward(self, x):
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 4, 8).permute(2, 0, 3, 1, 4)
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=self.bias)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("which", ["decoder", "masked", "learned"])
def test_attention_on_meta_counts_what_the_cpu_runs(train, which):
    # the reference is the CPU itself: its dispatcher picks the fused attention kernel, which never holds the
    # length x length scores; on meta (no kernel of its own) the same count must come out, memory included
    from decoder import Decoder

    from modelprof.counting.api import count_costs

    def build():
        torch.manual_seed(0)
        if which == "decoder":
            return Decoder(dim=64, mlp_dim=172, layers=2, heads=4, kv_heads=2), torch.randint(0, 1000, (2, 64))
        return (MaskedAttention() if which == "masked" else LearnedMask()), torch.randn(2, 64, 32)

    count = count_train_step if train else count_costs
    model, x = build()
    on_cpu = count(model, (x,))
    with torch.device("meta"):
        model, _ = build()
    on_meta = count(model, (torch.empty_like(x, device="meta"),))
    assert on_meta.unsupported == on_cpu.unsupported == {}
    if which == "masked" and not train:
        # under inference mode the CPU runs attention as one composite op, so its count does not see the boolean
        # mask turned into an additive one (a where over 64x64 elements: 4,096 selections, a 16 KiB float32
        # tensor) nor the kernel's logsumexp; on meta the kernel runs in the open and both are counted
        cpu, meta = on_cpu.total.values, on_meta.total.values
        assert meta["flops"] - cpu["flops"] == meta["madd"] - cpu["madd"] == 64 * 64
        assert on_meta.memory.peak > on_cpu.memory.peak
        return
    assert on_meta.memory.peak == on_cpu.memory.peak and on_meta.memory.saved == on_cpu.memory.saved
    assert on_meta.total.values == on_cpu.total.values


def test_dropout_in_training_on_cpu_by_hand():
    # off CUDA, F.dropout in training is bernoulli_ (draw the 3x8 = 24-element mask: no arithmetic, 96 bytes
    # written over the 96-byte empty tensor it fills), div_ (scale the mask by 1/(1-p): 24), mul (apply it: 24)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5))
    report = count_train_step(model, (torch.randn(3, 4),))
    row = {r.name: r for r in report.layers}["1"]
    assert report.unsupported == {}
    assert (row.flops, row.mem_read, row.mem_write) == (24 + 24, 96 + 96 + 2 * 96, 96 + 96 + 96)
    assert row.bwd_flops == 24  # the gradient through the mask: one product per element


def test_lstm_training_step_counts_onednns_layer_ops():
    # with autograd on, nn.LSTM runs oneDNN's mkldnn_rnn_layer per layer (and its backward); both are counted.
    # Hand arithmetic (thop's cell formulas, COUNTING.md): layer 1, I=8, H=16: a gate is 16·(8+16) + 16 + 2·16 =
    # 432, the cell 4·432 + 4·16 = 1,792; layer 2 (I=16): 16·32 + 48 = 560, 4·560 + 64 = 2,304; 5 steps of 1 sample:
    # (1,792 + 2,304)·5 = 20,480 Flops, as in eval (aten.lstm's formula).
    from modelprof import Training, Workload

    model, x = nn.LSTM(8, 16, num_layers=2, batch_first=True), torch.randn(1, 5, 8)
    forward = modelprof.count_costs(model, (x,))
    step = modelprof.count_costs(model, (x,), workload=Workload(Training(optimizer="sgd")))
    assert forward.total.flops == 20_480 and not step.unsupported
    lstm = {r.name: r for r in step.layers}["(root)"]
    # backward: each product's gradient for both operands, the elementwise once: products 64·(8+16) = 1,536 and
    # 64·32 = 2,048, elementwise 1,792 - 1,536 = 256 and 2,304 - 2,048 = 256, so (2·3,584 + 512)·5 = 38,400
    assert lstm.flops == 20_480 and lstm.bwd_flops == 38_400


def test_weight_norm_backward_formula():
    from modelprof.counting.formulas import TensorSpec

    # w = g·v/||v|| for a Conv1d(4, 6, 3) weight: v 6×4×3 (n = 72), g and the norms 6×1×1 (C = 6): 5n + 3C = 378
    v, g = TensorSpec((6, 4, 3), 4), TensorSpec((6, 1, 1), 4)
    cost = FORMULAS[torch.ops.aten._weight_norm_interface_backward]((v, v, g, g, 0), {}, (v, g))
    assert cost.flops == cost.madd == 378
    # and a weight-normed model's training step leaves no op uncounted
    from modelprof import Training, Workload

    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 3)), nn.ReLU())
    step = modelprof.count_costs(model, (torch.randn(1, 4, 10),), workload=Workload(Training()))
    assert not step.unsupported


def test_a_linear_layer_costs_the_same_in_a_forward_and_in_a_training_steps_forward():
    # Linear(3, 2) on one sample: MAdd = Co·(2·Ci - 1) = 2·5 = 10, the bias add left out (COUNTING.md), whether
    # the forward runs aten.linear (stats) or autograd's t + addmm (the training step's forward)
    from modelprof import Training, Workload

    model, x = nn.Linear(3, 2), torch.randn(1, 3)
    assert modelprof.count_costs(model, (x,)).total.madd == 10
    step = modelprof.count_costs(model, (x,), workload=Workload(Training(optimizer="sgd")))
    assert {r.name: r.madd for r in step.layers}["(root)"] == 10


def test_training_mode_batch_norm_counts_its_batch_statistics():
    # BatchNorm2d(4) on 2×4×8×8: n = 512, C = 4. Eval: MAdd 4n = 2,048, Flops 2n = 1,024 (torchstat). Training adds
    # the batch mean (n + C), variance (3n + C) and the running statistics' update (3C + 4C): 4n + 9C = 2,084, and
    # num_batches_tracked += 1 is one more add: MAdd 2,048 + 2,084 + 1 = 4,133, Flops 1,024 + 2,084 + 1 = 3,109
    from modelprof import Training, Workload

    model, x = nn.BatchNorm2d(4), torch.randn(2, 4, 8, 8)
    forward = modelprof.count_costs(model, (x,))
    assert (forward.total.madd, forward.total.flops) == (2_048, 1_024)
    step = modelprof.count_costs(model, (x,), workload=Workload(Training(optimizer="sgd")))
    row = {r.name: r for r in step.layers}["(root)"]
    assert (row.madd, row.flops) == (4_133, 3_109)


def test_a_training_step_of_a_model_without_parameters_is_modelprofs_own_error():
    from modelprof.counting.train import count_train_step
    from modelprof.errors import ModelError

    with pytest.raises(ModelError, match="no trainable parameters"):
        count_train_step(nn.ReLU(), (torch.randn(2, 3),))
