"""``--tp --sp``: sequence parallelism (Megatron's, torchtitan's), checked on a real 2-rank gloo job (the sharded
model's logits and gradients equal the whole model's; its collectives are as many as the count's, under PyTorch's
``CommDebugMode``) and by hand."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from modelprof.errors import UsageError
from modelprof.workload import Parallel, Training, Workload
from tests.test_pipeline_tp import _transformers, collectives

TINY = str(Path(__file__).resolve().parents[1] / "examples" / "configs" / "tiny-llama")
KIB = 1024


def _real_rank(rank: int, folder: str) -> None:
    """One rank of a real 2-rank gloo job: tiny-llama sharded by modelprof's own ``shard`` with ``--tp 2 --sp``,
    one forward and backward of (2, 64) token ids under ``CommDebugMode``; the logits and every gradient compared
    with the whole model's on the same tokens."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.debug import CommDebugMode

    from modelprof.prepare.parallel import shard

    transformers = _transformers()
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        config = transformers.AutoConfig.from_pretrained(TINY, use_cache=False)
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config)
        whole = copy.deepcopy(model)
        tokens = torch.randint(0, 1000, (2, 64), generator=torch.Generator().manual_seed(1))
        expected = whole(input_ids=tokens).logits
        expected.sum().backward()
        shard(model, Parallel(2, None, rank, 2, sequence_parallel=True), "cpu")
        counts = {}
        with CommDebugMode() as mode:
            logits = model(input_ids=tokens).logits
            counts["forward"] = {str(op): n for op, n in mode.get_comm_counts().items()}
            logits.sum().backward()
        counts["backward"] = {str(op): n - counts["forward"].get(str(op), 0)
                              for op, n in mode.get_comm_counts().items()}
        torch.testing.assert_close(logits, expected)
        grads = dict(whole.named_parameters())
        for name, param in model.named_parameters():
            grad = param.grad.full_tensor() if isinstance(param.grad, DTensor) else param.grad
            torch.testing.assert_close(grad, grads[name].grad, atol=1e-4, rtol=1e-4, msg=name)
        counts["norm"] = [p.is_replicate() for p in model.model.norm.weight.placements]
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(counts))
    finally:
        dist.destroy_process_group()
    os._exit(0)  # (as test_parallel's real ranks: no destructors racing gloo's threads)


def test_sequence_parallel_computes_the_whole_model_and_collects_as_a_real_gloo_job(run, tmp_path) -> None:
    """--gpus 2 --tp 2 --sp on tiny-llama (2 layers, width 64, vocabulary 1,000), batch 2 of 64 tokens. On real gloo
    ranks the sequence-parallel model's logits and gradients are the whole model's, and each phase's collectives
    are as many as the count's.

    By hand, the forward: the embeddings and each o_proj and down_proj reduce-scatter their (2, 64, 64) float32
    partial sums (32 KiB each) into the sequence's halves: 5 calls; each attention and MLP all-gathers its input,
    32 KiB, and the head its input, 32 KiB, and its (2, 64, 1,000) logits, 500 KiB: 6 calls. The backward mirrors
    them (the gathers' gradients reduce-scattered, the reduce-scatters' gathered), and all-reduces the input
    gradients of the 10 column-wise layers (32 KiB each), as plain TP does. Each norm works on half the sequence."""
    mp.start_processes(_real_rank, args=(str(tmp_path),), nprocs=2, join=True, start_method="spawn")
    code, out, err = run("stats", TINY, "--input", "input_ids=64:int64:1000", "--batch", "2", "--train", "--gpus",
                         "2", "--tp", "2", "--sp", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["parallel"]["describe"] == "tp 2 + sp"
    by = collectives(report)
    names = {"all_reduce": "c10d_functional.all_reduce", "all_gather": "c10d_functional.all_gather_into_tensor",
             "reduce_scatter": "c10d_functional.reduce_scatter_tensor"}
    for rank in range(2):
        real = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert real.pop("norm") == [True]  # the norms' weights whole (DTensor's SequenceParallel)
        for phase in ("forward", "backward"):
            ours = {names[kind]: calls for (kind, p), (calls, _) in by.items() if p == phase}
            assert ours == {op: n for op, n in real[phase].items() if n}, (rank, phase, ours, real[phase])
    assert by[("reduce_scatter", "forward")] == (5, 5 * 32 * KIB)
    assert by[("all_gather", "forward")] == (6, 5 * 32 * KIB + 2 * 64 * 1000 * 4)
    assert by[("all_reduce", "backward")] == (10, 10 * 32 * KIB)
    rows = {r["name"]: r for r in report["layers"]}
    plain = json.loads(run("stats", TINY, "--input", "input_ids=64:int64:1000", "--batch", "2", "--train", "--gpus",
                           "2", "--tp", "2", "--format", "json")[1])
    whole = {r["name"]: r for r in plain["layers"]}
    for norm in ("model.layers.0.input_layernorm", "model.layers.1.post_attention_layernorm", "model.norm"):
        # an RMSNorm's Flops are linear in the tokens: half the sequence, half the work, half the saved input
        assert 2 * rows[norm]["flops"] == whole[norm]["flops"], norm
        assert 2 * rows[norm]["saved"] == whole[norm]["saved"], norm
    assert rows["model.layers.0.self_attn.q_proj"]["flops"] == whole["model.layers.0.self_attn.q_proj"]["flops"]
    assert report["unsupported"] == {}


def test_sequence_parallel_peak_equals_memtracker() -> None:
    """tp 2 + sp on tiny-llama (a fake 2-rank group), batch 2 of 64 tokens: PyTorch's ``MemTracker`` on a loop of
    two AdamW steps (the second runs with the optimizer state the first made) peaks where the count does, to the
    byte: the norms' halved inputs, the gathered inputs of each attention and MLP, the reduce-scattered outputs."""
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from modelprof import count_costs
    from modelprof.prepare.parallel import _forget_meshes, shard

    transformers = _transformers()
    config = transformers.AutoConfig.from_pretrained(TINY, use_cache=False)
    model = transformers.AutoModelForCausalLM.from_config(config)
    tokens = torch.randint(0, 1000, (2, 64))
    parallel = Parallel(2, None, 0, 2, sequence_parallel=True)
    memory = count_costs(copy.deepcopy(model), (tokens,), workload=Workload(Training(), parallel=parallel)).memory
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=2)
    try:
        shard(model, parallel, "cpu")
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, foreach=False)
        tracker = MemTracker()
        tracker.track_external(model, optimizer, tokens)
        with tracker:
            for step in range(2):
                if step:
                    tracker.reset_mod_stats()
                loss = model.train()(tokens).logits.sum()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                del loss
    finally:
        dist.destroy_process_group()
        _forget_meshes()
    assert memory.peak == sum(v["Total"] for v in tracker.get_tracker_snapshot("peak").values())


def test_sequence_parallel_on_meta_counts_what_the_cpu_runs(run) -> None:
    """fsdp 2 × tp 2 + sp on --device meta: the stream's DTensors are fake CPU tensors, and every row, the memory and
    the collectives are the CPU run's (a row's op names aside, as for --pp --tp; rows compared by name: on CPU a
    gathered input's functional collective first passes through ``_wrap_tensor_autograd`` in its layer's row)."""
    reports = []
    for device in ("cpu", "meta"):
        code, out, err = run("stats", TINY, "--input", "input_ids=64:int64:1000", "--train", "--gpus", "4", "--tp",
                             "2", "--sp", "--fsdp", "--device", device, "--format", "json")
        assert code == 0, err
        reports.append(json.loads(out))
    on_cpu, on_meta = reports
    for key in ("total", "memory", "comm"):
        assert on_meta[key] == on_cpu[key], key
    rows = [{r["name"]: {**r, "ops": None} for r in report["layers"]} for report in reports]
    assert rows[0] == rows[1]


def _real_pipeline_rank(rank: int, folder: str) -> None:
    """One rank of a real 4-rank gloo job: tiny-llama prepared by modelprof itself as tp 2 + sp × pp 2 (each stage
    its layer, its TP shards, its slice of the sequence sent between the stages), one GPipe step of 2 microbatches
    under modelprof's schedule; every gradient the rank holds compared with the whole model's."""
    from torch.distributed.tensor import DTensor

    from modelprof.counting.train import pipeline_step
    from modelprof.prepare import prepared

    transformers = _transformers()
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=4)
    try:
        config = transformers.AutoConfig.from_pretrained(TINY, use_cache=False)
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config)
        tokens = torch.randint(0, 1000, (4, 64), generator=torch.Generator().manual_seed(1))
        whole = copy.deepcopy(model)
        # the mean of the 2 microbatches' losses (PyTorch's schedules scale the gradients by the microbatches)
        (whole(input_ids=tokens).logits.sum() / 2).backward()
        expected = dict(whole.named_parameters())
        workload = Workload(Training(), parallel=Parallel(4, None, rank, 2, pp=2, sequence_parallel=True))
        with prepared(model, (tokens,), {}, workload) as run:
            pipeline_step(run, lambda output, target: output.sum())()
            checked = []
            for name, param in run.model.named_parameters():
                grad = param.grad.full_tensor() if isinstance(param.grad, DTensor) else param.grad
                torch.testing.assert_close(grad, expected[name].grad, atol=1e-3, rtol=1e-4, msg=name)
                checked.append(name)
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(checked))
    finally:
        dist.destroy_process_group()
    os._exit(0)  # (as test_parallel's real ranks: no destructors racing gloo's threads)


def test_sequence_parallel_pipeline_stages_train_as_the_whole_model(run, tmp_path) -> None:
    """tp 2 + sp × pp 2 on 4 real gloo ranks: every gradient each rank holds equals the whole model's, so the
    stages' slices of the sequence reach the next stage, and their gradients come back, as they should. By hand,
    the count's sends halve: each of stage 0's 2 microbatches sends its (2, 32, 64) float32 slice, 16 KiB (and the
    start-up vote's 4 bytes), where --tp 2 alone sends (2, 64, 64), 32 KiB."""
    mp.start_processes(_real_pipeline_rank, args=(str(tmp_path),), nprocs=4, join=True, start_method="spawn")
    held = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(4)]
    assert "model.embed_tokens.weight" in held[0] and "lm_head.weight" in held[2]
    assert all(len(names) >= 10 for names in held)
    base = ["stats", TINY, "--input", "input_ids=64:int64:1000", "--batch", "4", "--train", "--pp", "2", "--gpus",
            "4", "--tp", "2", "--format", "json"]
    sends = []
    for extra in ([], ["--sp"]):
        code, out, err = run(*base, *extra)
        assert code == 0, err
        sends.append(collectives(json.loads(out))[("send", "forward")])
    assert sends == [(3, 2 * 32 * KIB + 4), (3, 2 * 16 * KIB + 4)]


@pytest.mark.parametrize(("parallel", "message"), [
    (Parallel(2, sequence_parallel=True), "it needs --tp N"),
    (Parallel(4, "fsdp", pp=2, sequence_parallel=True), "it needs --tp N"),
])
def test_sequence_parallel_refusals(parallel: Parallel, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Workload(Training(), parallel=parallel)


def test_sequence_parallel_needs_a_gathered_head(run, tmp_path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"blocks.*.fc1": "colwise", "blocks.*.fc2": "rowwise"}))
    code, out, err = run("stats", "tests.test_parallel:MlpNet", "--shape", "16", "--gpus", "2", "--tp", "2", "--sp",
                         "--tp-plan", str(plan))
    assert code == 2 and "--sp needs a plan whose last layer gathers its output whole" in err and out == "", err
    code, out, err = run("stats", "examples/configs/tiny-qwen3-moe", "--input", "input_ids=64:int64:1000", "--gpus",
                         "2", "--tp", "2", "--sp")
    assert code == 2 and "--sp is built for plans in" in err and "moe_tp_experts" in err, err
