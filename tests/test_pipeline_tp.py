"""``--pp`` with ``--tp``: a decoder cut by its layers (``prepare/layer_stages.py``), each stage tensor-parallel,
checked against the whole model, a real 4-rank gloo job under PyTorch's ``CommDebugMode`` and hand arithmetic."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from modelprof.prepare.layer_stages import CUT_BY_LAYERS, stage_model

TINY = str(Path(__file__).resolve().parents[1] / "examples" / "configs" / "tiny-llama")
BASE = ["stats", TINY, "--input", "input_ids=64:int64:1000", "--batch", "4", "--train", "--pp", "2", "--format",
        "json"]


def collectives(report: dict) -> dict[tuple[str, str], tuple[int, int]]:
    """A JSON report's collectives, (kind, phase) -> (calls, bytes), summed over the rows that ran them."""
    found: dict[tuple[str, str], tuple[int, int]] = {}
    for c in report["comm"]:
        calls, size = found.get((c["kind"], c["phase"]), (0, 0))
        found[(c["kind"], c["phase"])] = (calls + c["count"], size + c["bytes"])
    return found


def _transformers():  # noqa: ANN202
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("kind", CUT_BY_LAYERS)
def test_a_decoder_cut_by_its_layers_computes_the_whole_model(kind: str) -> None:
    """Three stages of one layer each, chained (token ids into the first, hidden states on), give the whole model's
    logits: the base model runs nothing on ``inputs_embeds`` that a later stage must not run again."""
    transformers = _transformers()
    config = transformers.AutoConfig.for_model(
        kind, vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, pad_token_id=0, bos_token_id=1, eos_token_id=2, use_cache=False,
        num_local_experts=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    x = torch.randint(0, 100, (2, 10))
    with torch.no_grad():
        whole = model(input_ids=x).logits
        hidden = stage_model(model, "model.layers", 0, 1, True, False)(input_ids=x)
        hidden = stage_model(model, "model.layers", 1, 2, False, False)(hidden)
        logits = stage_model(model, "model.layers", 2, 3, False, True)(hidden)
    torch.testing.assert_close(logits, whole)
    assert len(model.model.layers) == 3 and model.lm_head is not None  # the model itself is left whole


class _NoModules:
    """A stand-in for ``CommDebugMode``'s module tracker, whose forward hook fails in a pipeline stage's forward
    (``IndexError`` popping its parents, as on a traced stage's modules): the collectives are counted as before,
    under no module."""

    name, is_bw, activation_checkpointing = "Global", False, False
    module_parents_dict: dict[str, set] = {"Global": set()}

    def __enter__(self) -> _NoModules:
        return self

    def __exit__(self, *args: object) -> None:
        return None


class _Chunk(nn.Module):
    """A 2-stage cut of tiny-llama written by hand, as torchtitan cuts a model: stage ``index`` of the model
    (``inner``) with the other stage's layer left out, the embeddings on the first stage only, the final norm and
    the head on the second only; the first is given token ids, the second hidden states."""

    def __init__(self, transformers, index: int) -> None:  # noqa: ANN001
        super().__init__()
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.from_pretrained(TINY, use_cache=False))
        model.model.layers = nn.ModuleList([model.model.layers[index]])
        if index == 0:
            model.model.norm, model.lm_head = nn.Identity(), None
        else:
            model.model.embed_tokens = None
        self.inner, self.index = model, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.index == 0:
            return self.inner.model(input_ids=x).last_hidden_state
        return self.inner(inputs_embeds=x).logits


def _gpipe_step_counted(chunk: nn.Module, index: int, group, optimizer, folder: str, rank: int) -> None:  # noqa: ANN001
    """Stage ``index`` of 2 (``chunk``, sending over ``group``): one GPipe step of 2 microbatches of (2, 64) token
    ids and the optimizer's step under ``CommDebugMode`` (its module tracker stood in for), the counts saved."""
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe
    from torch.distributed.tensor.debug import CommDebugMode

    from tests.test_parallel import save_comm_counts

    hidden = torch.empty(2, 64, 64, requires_grad=True)
    inputs = (torch.zeros(2, 64, dtype=torch.long),) if index == 0 else (hidden,)
    outputs = hidden if index == 0 else torch.empty(2, 64, 1000, requires_grad=True)
    stage = PipelineStage(chunk, index, 2, torch.device("cpu"), input_args=inputs, output_args=outputs, group=group)
    schedule = ScheduleGPipe(stage, 2, loss_fn=lambda output, target: output.sum())
    mode = CommDebugMode()
    mode.advanced_module_tracker = _NoModules()
    with mode:
        if index == 0:
            schedule.step(torch.randint(0, 1000, (4, 64)))
        else:
            schedule.step(target=torch.zeros(2), losses=[])
        optimizer.step()
    save_comm_counts(mode, folder, rank)


def _real_rank(rank: int, folder: str) -> None:
    """One rank of a real 4-rank gloo job written as torchtitan writes one: tiny-llama cut into 2 stages of one
    layer (each stage the model with the other layer left out), each stage tensor-parallel over 2 ranks with the
    model's own plan, one GPipe step of 2 microbatches and AdamW's step, under ``CommDebugMode``."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    transformers = _transformers()
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=4)
    try:
        mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("pp", "tp"))
        index = mesh.get_local_rank("pp")
        chunk = _Chunk(transformers, index)
        model = chunk.inner
        layer = {"self_attn.q_proj": ColwiseParallel(), "self_attn.k_proj": ColwiseParallel(),
                 "self_attn.v_proj": ColwiseParallel(), "self_attn.o_proj": RowwiseParallel(),
                 "mlp.gate_proj": ColwiseParallel(), "mlp.up_proj": ColwiseParallel(),
                 "mlp.down_proj": RowwiseParallel()}
        plan = {f"model.layers.0.{name}": style for name, style in layer.items()}
        plan.update({"model.embed_tokens": RowwiseParallel(input_layouts=Replicate())} if index == 0 else
                    {"lm_head": ColwiseParallel(output_layouts=Replicate())})
        parallelize_module(model, mesh["tp"], plan)
        _gpipe_step_counted(chunk, index, mesh["pp"].get_group(), torch.optim.AdamW(model.parameters(), lr=0.0),
                            folder, rank)
    finally:
        dist.destroy_process_group()
    os._exit(0)  # (as test_parallel's real ranks: no destructors racing gloo's threads)


def test_pp_with_tp_collects_as_a_real_gloo_job(run, tmp_path) -> None:
    """--pp 2 --tp 2 --gpus 4 on tiny-llama (2 layers, width 64, 4 heads, 2 of keys and values, MLP 172, vocabulary
    1,000), batch 4 of 64 tokens in 2 microbatches: ranks 0-1 run stage 0 (the embeddings and layer 0), ranks 2-3
    stage 1 (layer 1, the norm and the head). Every rank's collectives, by kind, are as many as the real job's.

    By hand: a rank computes half of each sharded matmul of the whole batch (256 tokens): q_proj 256 · 64 · 32 =
    524,288 Flops, k_proj 256 · 64 · 16, gate_proj and down_proj 256 · 64 · 86, the head 256 · 64 · 500. Stage 0
    all-reduces, per microbatch, the embeddings' and layer 0's o_proj and down_proj partial sums in the forward and
    the input gradients of its 5 column-wise layers (q, k, v, gate, up) in the backward, each (2, 64, 64) float32 =
    32 KiB; it sends 2 microbatches of (2, 64, 64) float32 hidden states and receives their gradients."""
    mp.start_processes(_real_rank, args=(str(tmp_path),), nprocs=4, join=True, start_method="spawn")
    names = {"all_reduce": "c10d_functional.all_reduce", "all_gather": "c10d_functional.all_gather_into_tensor"}
    for rank in range(4):
        code, out, err = run(*BASE, "--gpus", "4", "--tp", "2", "--rank", str(rank))
        assert code == 0, err
        report = json.loads(out)
        assert report["parallel"]["describe"] == "tp 2 × pp 2, 2 microbatches, GPipe"
        ours: dict[str, int] = {}
        for c in report["comm"]:
            if c["kind"] in names:
                ours[names[c["kind"]]] = ours.get(names[c["kind"]], 0) + c["count"]
        real = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert ours == real, (rank, ours, real)
        rows = {r["name"]: r for r in report["layers"]}
        layer = f"model.layers.{rank // 2}"
        assert rows[f"{layer}.self_attn.q_proj"]["flops"] == 256 * 64 * 32
        assert rows[f"{layer}.self_attn.k_proj"]["flops"] == 256 * 64 * 16
        assert rows[f"{layer}.mlp.gate_proj"]["flops"] == rows[f"{layer}.mlp.down_proj"]["flops"] == 256 * 64 * 86
        assert ("lm_head" in rows) == (rank >= 2) and ("model.embed_tokens" in rows) == (rank < 2)
        if rank >= 2:
            assert rows["lm_head"]["flops"] == 256 * 64 * 500
        if rank == 0:
            by = collectives(report)
            assert by[("all_reduce", "forward")] == (2 * 3, 2 * 3 * 32 * 1024)
            assert by[("all_reduce", "backward")] == (2 * 5, 2 * 5 * 32 * 1024)
            assert by[("send", "forward")][1] - 4 == by[("recv", "backward")][1] == 2 * 32 * 1024  # (and the vote)
        assert report["unsupported"] == {}


def test_pp_with_tp_and_fsdp_on_meta_counts_what_the_cpu_runs(run) -> None:
    """fsdp 2 × tp 2 × pp 2 (8 ranks) on --device meta: each stage cut, sharded and run on fake CPU tensors, so
    rank 5's rows, memory and collectives are the CPU run's. By hand, rank 5 holds a quarter of each weight its
    stage's plan shards (over the 4 ranks of the stage) and half of each norm (over the 2 data-parallel ranks)."""
    reports = []
    for device in ("cpu", "meta"):
        code, out, err = run(*BASE, "--gpus", "8", "--tp", "2", "--fsdp", "--rank", "5", "--device", device)
        assert code == 0, err
        reports.append(json.loads(out))
    on_cpu, on_meta = reports
    for key in ("total", "memory", "comm"):
        assert on_meta[key] == on_cpu[key], key
    # every row's counts (its op names aside: on CPU a functional collective's result passes through
    # _wrap_tensor_autograd, which does no work, and which fake tensors skip)
    assert [{**r, "ops": None} for r in on_meta["layers"]] == [{**r, "ops": None} for r in on_cpu["layers"]]
    # stage 1: layer 1 (q 64·64, k and v 32·64, o 64·64, gate/up/down 172·64) and the head 1,000·64, sharded;
    # layer 1's two norms and the final norm, 64 each, whole
    sharded = 64 * 64 * 2 + 32 * 64 * 2 + 3 * 172 * 64 + 1000 * 64
    assert (on_cpu["parallel"]["held_tp_sharded"], on_cpu["parallel"]["held_whole"]) == (sharded // 4, 3 * 64 // 2)
    assert on_cpu["parallel"]["describe"] == "fsdp 2 × tp 2 × pp 2, 2 microbatches, GPipe"


@pytest.mark.parametrize("data", ["ddp", "zero1"])
def test_3d_with_ddp_or_zero1_reduces_each_stage_s_shards_once(run, data: str) -> None:
    """ddp (or zero1) 2 × tp 2 × pp 2 on 8 ranks, Megatron's layout (with its distributed optimizer: ZeRO-1). Rank
    2 is stage 0's data-parallel rank 1, tensor-parallel rank 0 (the mesh is (pp, dp, tp)); rank 0 its peer.

    By hand, stage 0 holds the embeddings (1,000 · 64, split over the vocabulary: 32,000 a rank) and layer 0 (q and
    o 64 · 64, k and v 32 · 64, gate, up and down 172 · 64, each halved: 2,048 + 2,048 + 1,024 + 1,024 + 3 · 5,504)
    = 54,656 elements of sharded weights, and its two 64-element norms whole: 54,784 in all, 219,136 bytes. Its
    backward all-reduces the input gradients of 5 column-wise layers per microbatch, (2, 64, 64) float32 = 32 KiB
    each, as tp 2 × pp 2 does, and then the gradients of its 2 replicated units (the layer, the rest of the stage)
    over its data-parallel pair, once, at the last microbatch: 219,136 bytes. ZeRO-1 then broadcasts each of its 10
    parameter tensors' shards from the rank that owns it (219,136 bytes), and the pair holds the Adam moments of
    every shard once between them (8 bytes an element) and one step count a tensor (4 bytes)."""
    reports = {}
    for rank in (0, 2):
        code, out, err = run(*BASE, "--gpus", "8", "--tp", "2", f"--{data[:4]}", *(["1"] if data == "zero1" else []),
                             "--rank", str(rank))
        assert code == 0, err
        reports[rank] = json.loads(out)
    report = reports[2]
    assert report["parallel"]["describe"] == f"{data} 2 × tp 2 × pp 2, 2 microbatches, GPipe"
    assert (report["parallel"]["held_tp_sharded"], report["parallel"]["held_whole"]) == (54_656, 128)
    held = 54_784 * 4
    assert report["memory"]["parameters"] == report["memory"]["gradients"] == held
    by = collectives(report)
    assert by[("all_reduce", "forward")] == (2 * 3, 2 * 3 * 32 * 1024)
    assert by[("all_reduce", "backward")] == (2 * 5 + 2, 2 * 5 * 32 * 1024 + held)
    if data == "zero1":
        assert by[("broadcast", "optimizer")] == (10, held)
        assert sum(r["memory"]["optimizer"] for r in reports.values()) == 2 * held + 4 * 10
    else:
        assert ("broadcast", "optimizer") not in by and report["memory"]["optimizer"] == 2 * held + 4 * 10
    assert report["unsupported"] == {}


def test_pp_with_tp_refuses_a_model_it_cannot_cut_by_layers(run, tmp_path) -> None:
    """(The layouts it cannot shard are refused with test_parallel's pipeline refusals.)"""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"blocks.*.fc1": "colwise", "blocks.*.fc2": "rowwise"}))
    code, out, err = run("stats", "tests.test_parallel:MlpNet", "--shape", "16", "--batch", "8", "--train", "--pp",
                         "2", "--gpus", "4", "--tp", "2", "--tp-plan", str(plan))
    assert code == 2 and "--pp with --tp cuts a transformers decoder by its layers" in err, err


def test_fit_finds_the_fewest_gpus_of_a_3d_job(run) -> None:
    """fit --fsdp --tp 2 --pp 2 without --gpus: the fewest GPUs (4, 8, 16 ...: tp × pp × a power of two) on which
    the step's batch of each data-parallel rank fits, each job size's peak the highest of its stages' first ranks,
    as stats counts them."""
    job = [TINY, "--input", "input_ids=64:int64:1000", "--train", "--batch", "4", "--fsdp", "--tp", "2", "--pp", "2"]

    def peak(gpus: int) -> int:
        peaks = []
        for rank in (0, gpus // 2):
            code, out, err = run("stats", *job, "--gpus", str(gpus), "--rank", str(rank), "--device", "meta",
                                 "--format", "json")
            assert code == 0, err
            peaks.append(json.loads(out)["memory"]["peak"])
        return max(peaks)

    at4, at8 = peak(4), peak(8)
    assert at8 < at4
    code, out, err = run("fit", *job, "--memory", str(at4 - 1), "--format", "json")
    assert code == 0, err
    gpus = json.loads(out)["gpus"]
    assert (gpus["fewest"], gpus["peak_at_fewest"], gpus["stages"]) == (8, at8, 2)
    assert gpus["layout"] == "fsdp × tp 2 × pp 2, 2 microbatches, GPipe"
    assert [p["gpus"] for p in gpus["peaks"]] == [4, 8]


def test_a_16_bit_model_sends_what_its_residual_stream_holds(run, tmp_path) -> None:
    """tiny-llama in float16, --pp 2 --tp 2, rank 0: its 2 microbatches of (2, 64, 64) hidden states are sent in
    float16 (2 · 8,192 · 2 = 32,768 bytes), and under --amp's bfloat16 autocast in float32 (65,536 bytes): the
    residual stream adds each layer's bfloat16 output to the float16 embeddings, which PyTorch promotes to float32.
    (A stage told otherwise fails, not miscounts: its outputs are checked against the shapes it was given.)"""
    config = json.loads((Path(TINY) / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "torch_dtype": "float16"}))
    base = ["stats", str(tmp_path), *BASE[2:], "--gpus", "4", "--tp", "2"]
    for amp, size in (((), 2), (("--amp",), 4)):
        code, out, err = run(*base, *amp)
        assert code == 0, err
        sent = sum(c["bytes"] for c in json.loads(out)["comm"] if c["kind"] == "send" and c["phase"] == "forward")
        assert sent == 2 * 2 * 64 * 64 * size + 4  # and the 4-byte start-up vote


def test_a_checkpointed_3d_stage_keeps_each_layer_s_input_only(run) -> None:
    """--pp 2 --tp 2 --checkpoint auto, rank 0: stage 0's one layer is checkpointed inside the eager stage, so of
    everything the stage saved for its backward (hundreds of KiB without) it keeps only that layer's input hidden
    states, whole on every TP rank: 2 microbatches · (2, 64, 64) float32 = 65,536 bytes, on the layer's row."""
    code, out, err = run(*BASE, "--gpus", "4", "--tp", "2", "--checkpoint", "auto")
    assert code == 0, err
    report = json.loads(out)
    assert report["memory"]["saved"] == 2 * 2 * 64 * 64 * 4
    assert [(r["name"], r["saved"]) for r in report["layers"] if r.get("saved")] == [("model.layers.0", 65_536)]


@pytest.mark.parametrize("schedule", ["zbv", "dualpipev"])
def test_a_v_shaped_schedule_passes_values_between_its_own_stages(run, tmp_path, schedule: str) -> None:
    """--pp 2 --schedule zbv | dualpipev on a 4-layer tiny-llama: 4 stages of one layer in a V, rank 0 running
    stages 0 and 3, rank 1 stages 1 and 2, which pass their values to each other without the process group.

    By hand: a layer holds q 64·64 + k, v 32·64 + o 64·64 + gate, up, down 172·64 + 2 norms of 64 = 45,440 weights;
    rank 0 also the embeddings and the head (1000·64 each) and the final norm: 2 · 45,440 + 128,000 + 64 = 218,944
    (875,776 bytes), rank 1 90,880. A microbatch (1 of the batch of 4) is (1, 64, 64) float32 = 16 KiB: each rank
    sends 4 forward (rank 0 stage 0's outputs, rank 1 stage 2's) and 4 backward, as many as it receives, and the
    start-up vote's two 4-byte messages each way; nothing is sent between stages 1 and 2. Each Linear runs on one
    rank, with the unsplit step's forward Flops."""
    config = json.loads((Path(TINY) / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 4}))
    step = ["stats", str(tmp_path), "--input", "input_ids=64:int64:1000", "--batch", "4", "--train", "--format", "json"]
    base = [*step, "--pp", "2"]
    code, out, err = run(*step)  # the whole step, unsplit
    assert code == 0, err
    whole = {r["name"]: r["flops"] for r in json.loads(out)["layers"] if r["type"] == "Linear"}
    seen = []
    for rank, weights, stages in ((0, 218_944, (0, 3)), (1, 90_880, (1, 2))):
        code, out, err = run(*base, "--schedule", schedule, "--microbatches", "4", "--rank", str(rank))
        assert code == 0, err
        report = json.loads(out)
        assert report["memory"]["parameters"] == weights * 4
        by = collectives(report)
        sent = 4 * 64 * 64 * 4
        assert by[("send", "forward")] == by[("recv", "forward")] == (4 + 2, sent + 2 * 4)
        assert by[("send", "backward")] == by[("recv", "backward")] == (4, sent)
        for row in report["layers"]:
            stage, _, name = row["name"].partition(".")
            if row["type"] == "Linear":
                assert int(stage.removeprefix("stage")) in stages and row["flops"] == whole[name], row["name"]
                seen.append(name)
    assert sorted(seen) == sorted(whole)  # every Linear on one rank


def test_a_v_shaped_schedule_refuses_a_model_it_cannot_cut_by_layers(run) -> None:
    code, out, err = run("stats", "examples/resnet.py:resnet18", "--shape", "3,32,32", "--batch", "4", "--train",
                         "--pp", "2", "--schedule", "zbv")
    assert code == 2 and "--schedule zbv cuts a transformers decoder by its layers" in err, err


def _real_zero1_rank(rank: int, folder: str) -> None:
    """One rank of a real 4-rank gloo job, DeepSpeed's pipeline with ZeRO-1 written with PyTorch's own parts:
    tiny-llama cut into 2 stages of one layer (``_Chunk``), each stage's module in
    ``DistributedDataParallel`` over the stage's 2 data-parallel ranks and its optimizer PyTorch's
    ``ZeroRedundancyOptimizer`` (AdamW) over them, one GPipe step of 2 microbatches and the optimizer's step, under
    ``CommDebugMode``."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.optim import ZeroRedundancyOptimizer

    transformers = _transformers()
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=4)
    try:
        mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("pp", "dp"))
        index = mesh.get_local_rank("pp")
        model = _Chunk(transformers, index)
        chunk = nn.parallel.DistributedDataParallel(model, process_group=mesh["dp"].get_group())
        optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW,
                                            process_group=mesh["dp"].get_group(), lr=0.0)
        _gpipe_step_counted(chunk, index, mesh["pp"].get_group(), optimizer, folder, rank)
    finally:
        dist.destroy_process_group()
    os._exit(0)  # (as test_parallel's real ranks: no destructors racing gloo's threads)


def test_pp_with_zero1_collects_as_a_real_gloo_job(run, tmp_path) -> None:
    """--pp 2 --zero 1 --gpus 4 on tiny-llama, batch 4 in 2 microbatches: each stage in DDP over its 2
    data-parallel ranks, the optimizer's state sharded over them (DeepSpeed's pipeline with ZeRO-1). Every rank's
    all-reduces and broadcasts are as many as the real job's.

    By hand, the ZeRO volumes: a stage's gradients are all-reduced once, at the last microbatch's backward (stage 0:
    the embeddings 1,000 · 64 and layer 0, 64 · 64 · 2 + 32 · 64 · 2 + 172 · 64 · 3 + 64 · 2 = 45,440: 109,440
    float32 = 437,760 bytes; stage 1: layer 1, the final norm 64 and the head 1,000 · 64: 109,504), and after the
    optimizer's step every parameter is broadcast from the rank that owns it, each once (stage 0's 10 tensors,
    stage 1's 11); DDP broadcasts the stage's buffers before the first forward (the rotary embedding's inv_freq and
    original_inv_freq, 8 float32 each: head size 16 / 2)."""
    mp.start_processes(_real_zero1_rank, args=(str(tmp_path),), nprocs=4, join=True, start_method="spawn")
    names = {"all_reduce": "c10d.allreduce_", "broadcast": "c10d.broadcast_"}
    for rank in range(4):
        code, out, err = run(*BASE, "--gpus", "4", "--zero", "1", "--rank", str(rank))
        assert code == 0, err
        report = json.loads(out)
        assert report["parallel"]["describe"] == "zero1 2 × pp 2, 2 microbatches, GPipe"
        ours: dict[str, int] = {}
        for c in report["comm"]:
            if c["kind"] in names:
                ours[names[c["kind"]]] = ours.get(names[c["kind"]], 0) + c["count"]
        real = {op: n for op, n in json.loads((tmp_path / f"rank{rank}.json").read_text()).items() if op in
                names.values()}
        assert ours == real, (rank, ours, real)
        held = 109_440 if rank < 2 else 109_504
        by = collectives(report)
        assert by[("all_reduce", "backward")] == (1, held * 4)
        assert by[("broadcast", "optimizer")] == (10 if rank < 2 else 11, held * 4)
        assert by[("broadcast", "forward")] == (1, 2 * 8 * 4)
    code, out, err = run("stats", "tests.test_parallel:MlpNet", "--shape", "16", "--batch", "8", "--train", "--pp",
                         "2", "--gpus", "4", "--zero", "1")
    assert code == 2 and "--pp with --zero 1 cuts a transformers decoder by its layers" in err, err
