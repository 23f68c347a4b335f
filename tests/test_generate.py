"""stats --generate: prefill and cached decode steps, the KV cache's bytes by the formula, each decode step
against FlopCounterMode, and attention growing with the square of the prompt."""

import json
import sys
import types

import pytest
import torch
from fixtures import EXAMPLES, WORKED
from torch.utils.flop_counter import FlopCounterMode

from modelprof.counting.formulas import FORMULAS, Cost
from modelprof.counting.generate import count_generation

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
transformers = pytest.importorskip("transformers")
aten = torch.ops.aten
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
         "num_hidden_layers": 2, "vocab_size": 1000, "max_position_embeddings": 512, "pad_token_id": 0,
         "bos_token_id": 1, "eos_token_id": 2}


def kv_bytes(layers, kv_heads, head_dim, tokens, batch, itemsize=4):
    return 2 * layers * kv_heads * head_dim * tokens * batch * itemsize  # keys and values


@pytest.mark.parametrize(
    ("config", "model", "window"),
    [("LlamaConfig", "LlamaForCausalLM", None), ("Qwen2Config", "Qwen2ForCausalLM", None),
     ("MistralConfig", "MistralForCausalLM", 8)],
)
def test_kv_cache_bytes_by_the_formula(config, model, window):
    extra = {"sliding_window": window} if window else {}
    built = getattr(transformers, model)(getattr(transformers, config)(**SMALL, **extra))
    report = count_generation(built, torch.randint(3, 1000, (2, 16)), 4)
    # 16 prompt + 4 decoded positions; a sliding window keeps only its last `window` positions
    tokens = min(20, window) if window else 20
    # 2 layers, 2 kv heads of 64 / 4 = 16 dims, batch 2, float32
    assert report.generation.kv_cache == kv_bytes(2, 2, 16, tokens, 2)
    assert report.unsupported == {} and len(report.generation.steps) == 4


def products_only():
    keep = {op: FORMULAS[op] for op in (aten.mm, aten.bmm, aten.addmm, aten.baddbmm, aten.linear, aten.matmul)}
    return {op: keep.get(op, lambda a, k, o: Cost()) for op in FORMULAS}


def test_decode_step_equals_flop_counter_mode():
    config = transformers.LlamaConfig(**SMALL)
    config._attn_implementation = "eager"  # matmul attention: FlopCounterMode counts CPU SDPA as 0
    model = transformers.LlamaForCausalLM(config).eval()
    prompt = torch.randint(3, 1000, (1, 24))
    ours = count_generation(model, prompt, 3, formulas=products_only()).generation.steps
    # FlopCounterMode on the same cached steps, one at a time
    with torch.inference_mode():
        output = model(prompt, use_cache=True)
        for step in ours:
            counter = FlopCounterMode(display=False)
            with counter:
                output = model(output.logits[:, -1:].argmax(-1), past_key_values=output.past_key_values,
                               use_cache=True)
            assert 2 * step.flops == counter.get_total_flops(), step.position


def test_attention_grows_with_the_square_of_the_prompt():
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL))
    attention = {aten._scaled_dot_product_flash_attention_for_cpu, aten.scaled_dot_product_attention}
    table = {op: (f if op in attention else (lambda a, k, o: Cost())) for op, f in FORMULAS.items()}
    short, long = (count_generation(model, torch.randint(3, 1000, (1, n)), 1, formulas=table).total.flops
                   for n in (64, 128))
    # BH*L*S*(E + Ev) + elementwise per score: doubling L = S multiplies the products by 4 exactly; the softmax's
    # BH*L*(3S - 1) term keeps the ratio a hair under 4
    assert long / short == pytest.approx(4.0, rel=0.01)


def test_generate_through_the_cli(run):
    code, out, err = run("stats", str(EXAMPLES / "configs" / "tiny-llama"), "--generate", "--prompt-len", "32",
                         "--new-tokens", "4", "--batch", "2", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["phases"] == ["forward", "decode"] and data["generation"]["prompt"] == 32
    assert data["generation"]["kv_cache"] == kv_bytes(2, 2, 16, 36, 2)
    assert [s["position"] for s in data["generation"]["steps"]] == [32, 33, 34, 35]
    code, out, err = run("stats", str(EXAMPLES / "configs" / "tiny-llama"), "--generate", "--prompt-len", "8")
    assert code == 0 and "KV cache at the end" in out and "Decode:" in out
    code, out, err = run("stats", WORKED, "--generate", "--prompt-len", "8")
    assert code == 1 and "past_key_values" in err
    code, out, err = run("stats", WORKED, "--shape", "3,8,8", "--generate")
    assert code == 2 and "go together" in err


def test_bench_generate_times_first_token_and_each_token(run):
    code, out, err = run("bench", str(EXAMPLES / "configs" / "tiny-llama"), "--generate", "--prompt-len", "16",
                         "--new-tokens", "4", "--reps", "2", "--format", "json")
    assert code == 0, err
    timing = json.loads(out)["generation"]
    # 2 timed generations: 2 first tokens, and 3 decode steps each after the first token
    assert len(timing["time_to_first_token"]["samples_ms"]) == 2 and len(timing["per_token"]["samples_ms"]) == 6
    assert timing["tokens_per_second"] == pytest.approx(1 / (timing["per_token"]["mean_ms"] / 1e3))
    code, out, err = run("bench", WORKED, "--shape", "3,8,8", "--generate")
    assert code == 2 and "go together" in err


def test_sweep_of_sequence_length_fits_the_attention_term(run):
    code, out, err = run("stats", str(EXAMPLES / "configs" / "tiny-llama"), "--input", "input_ids=SEQ:int64:1000",
                         "--sweep", "seq=128,256,512,1024", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["kind"] == "sweep" and [p["value"] for p in data["points"]] == [128, 256, 512, 1024]
    a, b, c = data["quadratic_fit"]["flops"]
    # the quadratic term is attention's: 2 layers x 4 heads x (16 + 16 for the two products, 1 scale, 3 softmax)
    assert a == pytest.approx(2 * 4 * (16 + 16 + 1 + 3)) and c == pytest.approx(0, abs=1e-3)
    for point in data["points"]:
        assert round(a * point["value"] ** 2 + b * point["value"] + c) == point["flops"]
    assert data["growth"]["mem_read"] == pytest.approx(1, abs=0.15)  # bytes grow linearly


def test_sweep_of_batch_is_linear(run):
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--sweep", "batch=1,2,4", "--format", "json")
    assert code == 0, err
    flops = [p["flops"] for p in json.loads(out)["points"]]
    assert flops[1] == 2 * flops[0] and flops[2] == 4 * flops[0]
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--sweep", "seq=1,2")
    assert code == 2 and "no input has a size named SEQ" in err
    code, out, err = run("stats", WORKED, "--shape", "3,32,32", "--sweep", "batch=4")
    assert code == 2 and "at least two" in err


def test_fit_longest_sequence_and_generation_batch():
    from modelprof.loading.source import Device, DType, Inputs, InputSpec, ModelSource
    from modelprof.planning.fit import fit_batch, fit_length, phase_peaks
    from modelprof.workload import FORWARD, Generation, Workload

    target = str(EXAMPLES / "configs" / "tiny-llama")
    source = ModelSource(target, Inputs(specs=(InputSpec(("SEQ",), DType.INT64, name="input_ids", high=1000),)))
    meta = ModelSource(target, source.inputs, device=Device.META)
    memory = 16 * 2**20
    longest = fit_length(source, memory, "SEQ", FORWARD, batch=2)
    # the answer fits exactly, and one position more does not
    assert longest.peak_at_max <= memory
    bound = ModelSource(target, meta.inputs.bind("SEQ", longest.max_batch + 1), device=Device.META)
    assert max(phase_peaks(bound, FORWARD, 2).values()) > memory
    generate = Workload(Generation(64, 8))
    generation = fit_batch(source, memory, generate)
    assert generation.peak_at_max <= memory
    assert max(phase_peaks(meta, generate, generation.max_batch + 1).values()) > memory


def test_fit_through_the_cli(run):
    code, out, err = run("fit", str(EXAMPLES / "configs" / "tiny-llama"), "--generate", "--prompt-len", "64",
                         "--new-tokens", "4", "--memory", "16MiB", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert [f["dim"] for f in data["fits"]] == ["batch", "prompt"] and data["fits"][0]["max_batch"] > 1
    assert "kind" not in data["fits"][0]  # the fits are listed once, not nested in a copy of the first


def test_bench_sweep_times_each_value(run, tmp_path):
    code, out, err = run("bench", str(EXAMPLES / "configs" / "tiny-llama"), "--input", "input_ids=SEQ:int64:1000",
                         "--sweep", "seq=16,32", "--reps", "2", "--warmup", "1", "--warmup-time", "0", "--quiet",
                         "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert [r["point"] for r in data["sweep"]] == [16, 32] and data["environment"]["sweep_dim"] == "seq"
    assert data["inputs"][0]["shape"] == [1, 32]
    code, out, err = run("bench", WORKED, "--shape", "3,8,8", "--sweep", "batch=1,2", "--reps", "2", "--warmup", "1",
                         "--warmup-time", "0", "--quiet", "--format", "json")
    assert code == 0 and [r["batch"] for r in json.loads(out)["sweep"]] == [1, 2]


def test_sweep_plot(run, tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "sweep.png"
    code, _, err = run("stats", WORKED, "--shape", "3,16,16", "--sweep", "batch=1,2,4", "--plot", target)
    assert code == 0 and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", err
    code, _, err = run("stats", WORKED, "--shape", "3,16,16", "--plot", target)
    assert code == 2 and "plot of a sweep" in err


@pytest.mark.parametrize(("config", "model", "extra", "prompt"), [
    ("LlamaConfig", "LlamaForCausalLM", {}, 16),
    # the window fills up between the second and the last step: the costs are not affine, every step is counted
    ("MistralConfig", "MistralForCausalLM", {"sliding_window": 12}, 4),
])
def test_meta_decode_from_three_steps_equals_every_step(config, model, extra, prompt):
    with torch.device("meta"):
        built = getattr(transformers, model)(getattr(transformers, config)(**SMALL, **extra))
    ids = torch.randint(3, 1000, (2, prompt), device="meta")
    quick = count_generation(built, ids, 12)
    every = count_generation(built, ids, 12, every_step=True)
    assert quick.layers == every.layers and quick.total == every.total
    assert quick.generation.steps == every.generation.steps
    assert quick.generation.kv_cache == every.generation.kv_cache
    assert quick.memory == every.memory  # the peak and where it happens, phase by phase
