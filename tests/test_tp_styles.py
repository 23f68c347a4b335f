"""``--tp`` with transformers' plan styles beyond colwise and rowwise (a mixture's packed experts, a per-head norm
whose gradient is all-reduced, fused layers gathered and split again): checked against transformers' own
tensor-parallel job (``from_pretrained(tp_plan="auto")``) on real gloo ranks under PyTorch's ``CommDebugMode``,
and by hand."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.test_pipeline_tp import collectives

TOKENS = ["--input", "input_ids=64:int64:1000", "--format", "json"]
# Qwen3-MoE with every layer a mixture: Qwen3's q_norm/k_norm (replicated_with_grad_allreduce) and the experts
# (packed_colwise gate_up_proj, a rowwise down_proj parameter, moe_tp_experts around them) in one model
QWEN3_MOE = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 64,
             "intermediate_size": 128, "moe_intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2,
             "vocab_size": 1000, "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1,
             "eos_token_id": 2}
# Phi-3: a fused qkv_proj and gate_up_proj gathered whole (colwise_gather_output), o_proj and down_proj splitting
# that whole input (rowwise_split_input)
PHI3 = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 64, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 1000,
        "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
# DeepSeek-V2: multi-head latent attention (its kv_a_proj_with_mqa whole, mla_kv_a_proj: the rotary part's gradient
# all-reduced), layer 0 dense, layer 1 a mixture with a shared expert
DEEPSEEK_V2 = {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "hidden_size": 64,
               "intermediate_size": 128, "moe_intermediate_size": 32, "n_routed_experts": 4, "n_shared_experts": 1,
               "num_experts_per_tok": 2, "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
               "kv_lora_rank": 16, "q_lora_rank": None, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
               "v_head_dim": 16, "num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 2,
               "vocab_size": 1000, "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1,
               "eos_token_id": 2}
# Granite SWA: attention sinks, a bare parameter its own plan entry splits by head, its module run on local
# tensors (local_params)
GRANITE_SWA = {"architectures": ["GraniteSWAForCausalLM"], "model_type": "granite_swa", "hidden_size": 64,
               "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
               "vocab_size": 1000, "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1,
               "eos_token_id": 2}
# Inkling 2: its own plan leaves the normed embeddings whole (replicate), the experts as Qwen3-MoE's, the head
# row-wise on its whole input (rowwise_split_input)
INKLING2 = {"architectures": ["Inkling2ForCausalLM"], "model_type": "inkling2_text", "hidden_size": 64,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "swa_num_attention_heads": 4,
            "swa_num_key_value_heads": 2, "swa_head_dim": 16, "sliding_window_size": 16, "rel_extent": 64,
            "layer_types": ["hybrid_sliding", "hybrid"], "n_layers_per_attn_res_block": 1, "num_hidden_layers": 2,
            "moe_intermediate_size": 32, "n_routed_experts": 4, "num_experts_per_tok": 2, "vocab_size": 1000,
            "unpadded_vocab_size": 1000, "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1,
            "eos_token_id": 2}
# LongCat-Flash: one layer of two latent attentions and two dense MLPs beside a mixture whose zero experts are
# identities (moe_identity_expert: their input divided by tp, as the experts' partial sums are all-reduced)
LONGCAT = {"architectures": ["LongcatFlashForCausalLM"], "model_type": "longcat_flash", "hidden_size": 64,
           "num_attention_heads": 4, "num_key_value_heads": 4, "num_layers": 1, "ffn_hidden_size": 128,
           "q_lora_rank": 32, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "head_dim": 8,
           "v_head_dim": 16, "qk_head_dim": 16, "moe_topk": 2, "n_routed_experts": 4, "zero_expert_num": 2,
           "expert_ffn_hidden_size": 32, "vocab_size": 1000, "tie_word_embeddings": False, "pad_token_id": 0,
           "bos_token_id": 1, "eos_token_id": 2}
# Qwen4-Exp: gated delta-rule (linear) attention whose projections are gathered whole, hyper-connections split
# their whole input (rowwise_split_input), layer 1's n-gram embeddings split along their width (embedding_colwise)
QWEN4_EXP = {"architectures": ["Qwen4ExpForCausalLM"], "model_type": "qwen4_exp_text", "hidden_size": 64,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "linear_key_head_dim": 16,
             "linear_value_head_dim": 16, "linear_num_key_heads": 4, "linear_num_value_heads": 4,
             "layer_types": ["linear_attention", "linear_attention"], "num_hidden_layers": 2,
             "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32, "num_experts": 4,
             "num_experts_per_tok": 2, "hc_count": 2, "hc_lowrank": 16, "ple_layer_ids": [1], "ple_embed_dim": 64,
             "ngram_size": 2, "heads_per_ngram": 2, "ngram_vocab_size_base": 1000,
             "make_ngram_vocab_size_divisible_by": 8, "split_ngram_parts": 4, "vocab_size": 1000,
             "use_cache": False, "tie_word_embeddings": False, "pad_token_id": 0, "bos_token_id": 1,
             "eos_token_id": 2}
KIB = 1024
# the bytes per phase and kind, by hand: see the test's docstring
HAND = {"qwen3_moe": {"forward/all_reduce": 5 * 16 * KIB, "forward/all_gather": 64 * 1000 * 4,
                      "backward/all_reduce": 7 * 16 * KIB + 2 * (16 * KIB + 512) + 4 * 64},
        "phi3": {"forward/all_reduce": 5 * 16 * KIB, "forward/all_gather": 2 * (32 + 64) * KIB + 64 * 1000 * 4,
                 "backward/all_reduce": 5 * 16 * KIB, "backward/all_gather": 2 * (16 + 32) * KIB},
        # forward: the embeddings', each o_proj's, layer 0's down_proj's, layer 1's experts' and shared expert's
        # partial sums (6 × 16 KiB), the logits gathered; backward: the input gradients of q_proj (16 KiB) and
        # kv_b_proj ((64, 16): 4 KiB) of each layer, of layer 0's gate and up and the shared expert's (4 × 16 KiB),
        # of the head (16 KiB), of the experts (16 KiB and 512 B of routing weights), and the rotary part of each
        # kv_a_proj_with_mqa's output ((64, 8): 2 KiB)
        # as tiny-llama's: the embeddings', each o_proj's and down_proj's partial sums, the logits gathered; the
        # input gradients of q, k, v, gate and up of each layer and of the head (11 × 16 KiB); the sinks none
        "granite_swa": {"forward/all_reduce": 5 * 16 * KIB, "forward/all_gather": 64 * 1000 * 4,
                        "backward/all_reduce": 11 * 16 * KIB},
        "deepseek_v2": {"forward/all_reduce": 6 * 16 * KIB, "forward/all_gather": 64 * 1000 * 4,
                        "backward/all_reduce": 2 * (16 + 4) * KIB + 4 * 16 * KIB + 16 * KIB + 16 * KIB + 512
                        + 2 * 2 * KIB},
        # forward: each layer's experts' partial sums (2 × 16 KiB), the head's partial logits (64 × 1000 float32)
        # all-reduced; backward: the head's input gradient gathered (its whole (64, 64) input), each layer's
        # experts' input and routing-weight gradients all-reduced (2 × (16 KiB + 512 B))
        "inkling2_text": {"forward/all_reduce": 2 * 16 * KIB + 64 * 1000 * 4, "backward/all_gather": 16 * KIB,
                          "backward/all_reduce": 2 * (16 * KIB + 512)},
        # forward: the embeddings', both o_proj's, both MLPs' down_proj's and the mixture's partial sums
        # (6 × 16 KiB), the logits gathered; backward: the input gradients of each attention's q_b_proj ((64, 32):
        # 8 KiB) and kv_b_proj ((64, 16): 4 KiB), of each MLP's gate and up (4 × 16 KiB), of the head (16 KiB),
        # of the experts (16 KiB and 512 B of routing weights), the rotary part of each kv_a_proj_with_mqa's
        # output ((64, 8): 2 KiB)
        "longcat_flash": {"forward/all_reduce": 6 * 16 * KIB, "forward/all_gather": 64 * 1000 * 4,
                          "backward/all_reduce": 2 * (8 + 4) * KIB + 4 * 16 * KIB + 16 * KIB + 16 * KIB + 512
                          + 2 * 2 * KIB},
        # forward: the embeddings', each hyper-connection's ((64, 16): 4 KiB; two a layer and the final mixer's),
        # each layer's shared expert's and experts' partial sums all-reduced; gathered: the n-gram embeddings
        # ((64, 64): 16 KiB), each linear attention's qkv (64 × 192), z (64 × 64), b and a (64 × 4) and out
        # (64 × 64) outputs, the logits; backward: the input gradients of the head, of each layer's experts
        # (and 512 B of routing weights), shared gate and up, and 5 linear-attention projections all-reduced
        # (16 KiB each), each hyper-connection's whole (64, 128) input gradient gathered (32 KiB)
        "qwen4_exp_text": {"forward/all_reduce": 16 * KIB + 5 * 4 * KIB + 2 * 2 * 16 * KIB,
                           "forward/all_gather": 16 * KIB + 2 * 4 * (192 + 64 + 4 + 4 + 64) * 64
                           + 64 * 1000 * 4,
                           "backward/all_reduce": 16 * KIB + 2 * (512 + 8 * 16 * KIB),
                           "backward/all_gather": 5 * 32 * KIB}}
MIXTRAL = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 64,
           "intermediate_size": 128, "num_local_experts": 4, "num_experts_per_tok": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 1000, "tie_word_embeddings": False,
           "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def _transformers():  # noqa: ANN202
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("transformers.distributed.tensor_parallel")
    return transformers


def _config(tmp_path, config: dict) -> str:  # noqa: ANN001
    folder = tmp_path / config["model_type"]
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def _kind(op: str) -> str:
    """A collective's kind as modelprof names it, from the op ``CommDebugMode`` counts (``c10d.allreduce_``,
    ``c10d_functional.all_reduce``, ...)."""
    name = op.rpartition(".")[2].replace("allreduce", "all_reduce").replace("allgather", "all_gather")
    return next(kind for kind in ("all_reduce", "all_gather", "reduce_scatter") if kind in name)


def _comm_mode():  # noqa: ANN202
    """PyTorch's ``CommDebugMode``, its collective counts read. Its module tracker loses its place in LongCat's
    expert loop (an IndexError in its forward hook: its stack of modules already empty), so where it would fail
    the hook is let pass; the module names it keeps are not read here, the counts do not depend on them."""
    from torch.distributed.tensor.debug import CommDebugMode

    mode = CommDebugMode()
    tracker = mode.advanced_module_tracker
    leave = tracker._fw_set_module_hook

    def tolerant(module, args, output):  # noqa: ANN001, ANN202
        if tracker.is_bw or len(tracker.parent_list) > 1:
            leave(module, args, output)

    tracker._fw_set_module_hook = tolerant
    return mode


def _transformers_rank(rank: int, folder: str) -> None:
    """One rank of transformers' own 2-rank tensor-parallel job: the saved model loaded with its plan
    (``from_pretrained(tp_plan="auto")``), a forward, the sum of the logits' backward and AdamW's step, each phase
    under its own ``CommDebugMode``."""

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
    try:
        transformers = _transformers()
        model = transformers.AutoModelForCausalLM.from_pretrained(f"{folder}/model", tp_plan="auto")
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
        forward, backward = _comm_mode(), _comm_mode()
        with forward:
            loss = model(input_ids=torch.randint(0, 1000, (1, 64))).logits.sum()
        with backward:
            loss.backward()
            optimizer.step()
        counts: dict[str, int] = {}
        for phase, mode in (("forward", forward), ("backward", backward)):
            for op, n in mode.get_comm_counts().items():
                key = f"{phase}/{_kind(str(op))}"
                counts[key] = counts.get(key, 0) + n
        with open(os.path.join(folder, f"rank{rank}.json"), "w") as f:
            json.dump(counts, f)
    finally:
        dist.destroy_process_group()
    os._exit(0)  # (as test_parallel's real ranks: no destructors racing gloo's threads)


@pytest.mark.parametrize("config", [QWEN3_MOE, PHI3, DEEPSEEK_V2, GRANITE_SWA, INKLING2, LONGCAT, QWEN4_EXP],
                         ids=lambda c: c["model_type"])
def test_plans_communicate_as_transformers_own_tp_job(run, tmp_path, config: dict) -> None:
    """--gpus 2 --tp 2 --train with the model's own plan, 64 tokens: each rank's collectives per phase are as many
    as in transformers' own tensor-parallel job on 2 real gloo ranks; their bytes by hand.

    Qwen3-MoE (2 layers, width 64, 4 heads of 16, 2 of keys and values, 4 experts of 32, top 2, vocabulary 1,000):
    the forward all-reduces five (1, 64, 64) float32 partial sums, 16 KiB each (the vocabulary-split embeddings,
    each o_proj, each layer's experts) and gathers the head's (64, 1000) logits (250 KiB). The backward all-reduces
    the input gradients of the 6 column-wise projections (q, k, v of each layer) and of the head (7 × 16 KiB), of
    each layer's experts (16 KiB, and their (64, 2) routing weights, 512 B), and the gradients of the 4 per-head
    norms (16 float32 each, 64 B).

    Phi-3 (the same sizes, MLP 128): the forward all-reduces the embeddings' and each o_proj's and down_proj's
    partial sums (5 × 16 KiB) and gathers each layer's qkv_proj output (64 × 128 float32, 32 KiB) and gate_up_proj
    output (64 × 256, 64 KiB) and the logits (250 KiB). The backward all-reduces the input gradients of qkv_proj,
    gate_up_proj and the head (5 × 16 KiB) and gathers the gradients of the halves o_proj and down_proj split off
    their whole inputs (64 × 64 and 64 × 128 float32: 16 and 32 KiB a layer). The others', in ``HAND``."""
    transformers = _transformers()
    pytest.importorskip("accelerate")  # (transformers' from_pretrained(tp_plan=...) needs it)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config))
    model.save_pretrained(tmp_path / "model")
    mp.start_processes(_transformers_rank, args=(str(tmp_path),), nprocs=2, join=True, start_method="spawn")
    for rank in range(2):
        code, out, err = run("stats", str(tmp_path / "model"), *TOKENS, "--train", "--gpus", "2", "--tp", "2",
                             "--rank", str(rank))
        assert code == 0, err
        report = json.loads(out)
        real = json.loads((tmp_path / f"rank{rank}.json").read_text())
        by = {f"{phase}/{kind}": calls_bytes for (kind, phase), calls_bytes in collectives(report).items()}
        assert {key: calls for key, (calls, _) in by.items()} == real, (rank, real)
        assert {key: size for key, (_, size) in by.items()} == HAND[config["model_type"]]
        assert report["unsupported"] == {}


def test_packed_experts_halve_what_they_compute(run, tmp_path) -> None:
    """Mixtral (4 experts of 128, top 2), 64 tokens, --tp 2: each layer's experts compute half of their matmuls
    and of the product of their halves; the routing they do on every rank. By hand, 64 tokens × 2 experts = 128
    (token, expert) pairs: gate_up 128 · 64 · 256 and down 128 · 128 · 64 multiply-adds = 3,145,728 Flops, and the
    gate · up product 128 · 128 = 16,384, halved: 1,581,056 fewer Flops on a rank. A rank holds half of every
    weight the plan splits (the packed (4, 256, 64) gate_up_proj split within each half) and whole each layer's
    router (4 · 64) and two norms and the final norm (64 each): 2 · (256 + 128) + 64 = 832."""
    _transformers()
    folder = _config(tmp_path, MIXTRAL)
    reports = []
    for args in (["--gpus", "1"], ["--gpus", "2", "--tp", "2"]):
        code, out, err = run("stats", folder, *TOKENS, *args)
        assert code == 0, err
        reports.append({r["name"]: r for r in json.loads(out)["layers"]} | {"": json.loads(out)})
    whole, half = reports
    for layer in (0, 1):
        experts = f"model.layers.{layer}.mlp.experts"
        assert whole[experts]["flops"] - half[experts]["flops"] == (3_145_728 + 16_384) // 2
        assert half[f"{experts}.act_fn"]["flops"] * 2 == whole[f"{experts}.act_fn"]["flops"] == 128 * 128
        assert half[f"model.layers.{layer}.mlp.gate"] == whole[f"model.layers.{layer}.mlp.gate"]
    params = whole[""]["total"]["params"]
    assert (half[""]["parallel"]["held_tp_sharded"], half[""]["parallel"]["held_whole"]) == ((params - 832) // 2, 832)


def test_norm_gradients_are_all_reduced_under_fsdp(run, tmp_path) -> None:
    """--gpus 4 --tp 2 --fsdp: FSDP2 hands each per-head norm its parameter whole in the forward, where
    transformers' style hooks its gradient, so the 4 norm gradients are still all-reduced over the tensor-parallel
    pair (64 B each) beside the 11 input gradients (as in transformers' own fsdp 2 × tp 2 job, tried by hand:
    15 all-reduces in its backward)."""
    _transformers()
    code, out, err = run("stats", _config(tmp_path, QWEN3_MOE), *TOKENS, "--train", "--gpus", "4", "--tp", "2",
                         "--fsdp")
    assert code == 0, err
    reduced = [c for c in json.loads(out)["comm"] if c["kind"] == "all_reduce" and c["phase"] == "backward"]
    assert sum(c["count"] for c in reduced) == 15
    assert sorted(c["bytes"] for c in reduced if c["row"].endswith("_norm")) == [64] * 4


def test_a_plan_file_may_name_the_packed_styles(run, tmp_path) -> None:
    """--tp-plan with transformers' styles on a Mixtral: the experts' packed weights split, the projections left
    whole; a style neither DTensor nor transformers has is refused with the list."""
    _transformers()
    folder = _config(tmp_path, MIXTRAL)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model.layers.*.mlp.experts.gate_up_proj": "packed_colwise",
                                "model.layers.*.mlp.experts.down_proj": "rowwise",
                                "model.layers.*.mlp.experts": "moe_tp_experts"}))
    code, out, err = run("stats", folder, *TOKENS, "--gpus", "2", "--tp", "2", "--tp-plan", str(plan))
    assert code == 0, err
    # by hand: the experts' (4, 256, 64) and (4, 64, 128) weights of 2 layers, halved
    assert json.loads(out)["parallel"]["held_tp_sharded"] == 2 * (4 * 256 * 64 + 4 * 64 * 128) // 2
    plan.write_text(json.dumps({"model.layers.*.mlp.experts": "grouped_gemm"}))
    code, out, err = run("stats", folder, *TOKENS, "--gpus", "2", "--tp", "2", "--tp-plan", str(plan))
    assert code == 2 and "unknown style grouped_gemm" in err and "packed_colwise" in err and out == ""


def test_a_plan_transformers_own_job_cannot_run_is_a_model_error(run, tmp_path) -> None:
    """Inkling's own plan splits its embeddings over the vocabulary, but its embedding normalises its own lookup,
    so the norm gets the ranks' partial sums as a DTensor and fails, as in transformers' own 2-rank job (tried by
    hand: the same AssertionError in the norm): exit 1 naming the layer and the way out, --tp-plan."""
    _transformers()
    folder = _config(tmp_path, {**INKLING2, "architectures": ["InklingForCausalLM"], "model_type": "inkling_text",
                                "mlp_layer_types": ["dense", "sparse"], "intermediate_size": 128,
                                "n_shared_experts": 1})
    code, out, err = run("stats", folder, *TOKENS, "--gpus", "2", "--tp", "2")
    assert code == 1 and out == "", err
    assert "'model.embed_tokens.embed_norm'" in err and "tensor-parallel plan" in err and "--tp-plan" in err, err


class HeadsFromConfig(torch.nn.Module):
    """An attention-like layer that splits its projection into 4 heads of 4 by number, as a model's code takes its
    head count from its config: column-wise split over 2 ranks, each holds 2 heads, and the view fails."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(16, 16)
        self.out = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.qkv(x).view(x.shape[0], 4, 4)
        return self.out(heads.flatten(1))


def test_a_layer_that_cannot_take_its_shards_points_to_the_plan(run, tmp_path) -> None:
    """A forward that fails only because a layer got its shards (a plain shape error, not in DTensor) names the
    layer, and the way out besides the inputs: a plan that leaves it whole; the same model runs without --tp."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"qkv": "colwise", "out": "rowwise"}))
    target = "tests.test_tp_styles:HeadsFromConfig"
    code, out, err = run("stats", target, "--shape", "16", "--gpus", "2", "--tp", "2", "--tp-plan", str(plan))
    assert code == 1 and out == "" and "in layer '(root)'" in err and "if they run without --tp" in err, err
    code, out, err = run("stats", target, "--shape", "16")
    assert code == 0, err
