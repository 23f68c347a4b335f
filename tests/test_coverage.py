"""A fast slice of the coverage sweep (benchmarks/coverage.py): a few transformers and timm models built from
configs with random weights must count with no op left over, rows adding up and parameters exact."""

import sys
import types

import pytest
import torch

import modelprof
from modelprof.counting.formulas import FORMULAS, Cost
from modelprof.metrics import KEYS

# torchvision's compiled ops do not load against the CPU build of torch used here; its models do not need them
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
         "vocab_size": 1000, "max_position_embeddings": 128, "pad_token_id": 0, "bos_token_id": 1,
         "eos_token_id": 2}
TOKENS = 32


def assert_counted(model, args=(), kwargs=None):
    report = modelprof.count_costs(model.eval(), args, kwargs or {})
    assert report.unsupported == {}
    for key in KEYS:
        if key != "params":
            assert sum(getattr(r, key) for r in report.layers) == getattr(report.total, key), key
    assert report.total.params == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return report


def tokens():
    return {"input_ids": torch.randint(3, 1000, (1, TOKENS))}


@pytest.mark.parametrize(
    ("config", "model", "extra"),
    [
        ("GPT2Config", "GPT2LMHeadModel", {}),  # its attention bias buffer ran aten.detach_
        ("LlamaConfig", "LlamaForCausalLM", {"num_key_value_heads": 2}),  # grouped-query attention, rotary
        ("BertConfig", "BertModel", {}),
    ],
)
def test_language_models_count_every_op(config, model, extra):
    built = getattr(transformers, model)(getattr(transformers, config)(**SMALL, **extra))
    assert_counted(built, (), tokens())


def test_encoder_decoder_and_speech_models():
    t5 = transformers.T5Model(transformers.T5Config(**{**SMALL, "d_model": 64, "d_ff": 128, "d_kv": 16,
                                                       "num_layers": 2, "num_heads": 4}))
    assert_counted(t5, (), {**tokens(), "decoder_input_ids": torch.randint(3, 1000, (1, 8))})
    # wav2vec2's positional convolution is weight-normalised (aten._weight_norm_interface)
    wav2vec2 = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(
        **SMALL, conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4))
    assert_counted(wav2vec2, (torch.randn(1, 4000),))


def test_mixture_of_experts_counts_the_expert_products_exactly():
    config = transformers.MixtralConfig(**SMALL, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)
    model = transformers.MixtralForCausalLM(config)
    assert_counted(model, (), tokens())  # _grouped_mm and histc counted, nothing left over
    # Only the expert products: each of the 32 tokens goes to 2 experts; per expert call a token costs
    # gate + up + down = 3 * hidden 64 * intermediate 128 multiply-accumulates, in each of the 2 layers:
    # 32 * 2 * 3 * 64 * 128 * 2 = 3,145,728
    table = {op: (formula if op == torch.ops.aten._grouped_mm else (lambda a, k, o: Cost()))
             for op, formula in FORMULAS.items()}
    report = modelprof.count_costs(model.eval(), (), tokens(), formulas=table)
    assert report.total.flops == 32 * 2 * 3 * 64 * 128 * 2


@pytest.mark.parametrize("amp", [False, True])
def test_mixture_of_experts_training_step_on_meta_counts_what_the_cpu_runs(amp):
    # _grouped_mm's meta kernel takes bfloat16 only; the CPU's takes float32 too. The reference is the CPU count:
    # with every token routed to some experts, the products and the memory do not depend on the routing
    from modelprof.counting.train import count_train_step
    from modelprof.workload import Precision

    config = transformers.MixtralConfig(**SMALL, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)
    reports = []
    for device in ("cpu", "meta"):
        with torch.device(device):
            model = transformers.MixtralForCausalLM(config)
        ids = {"input_ids": torch.randint(3, 1000, (2, TOKENS)).to(device)}
        reports.append(count_train_step(model, (), ids, loss=lambda out, *_: out.logits.float().sum(),
                                        precision=Precision(amp=amp)))
    on_cpu, on_meta = reports
    assert on_cpu.unsupported == on_meta.unsupported == {}
    assert on_meta.total.values == on_cpu.total.values
    assert (on_meta.memory.peak, on_meta.memory.saved) == (on_cpu.memory.peak, on_cpu.memory.saved)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "mobilenetv3_small_050", "mixer_s32_224",
                                  "convnext_atto", "efficientformerv2_s0"])
def test_timm_models_count_every_op(name):
    model = timm.create_model(name, pretrained=False)
    size = timm.models.get_pretrained_cfg(name).input_size
    assert_counted(model, (torch.randn(1, *size),))
