"""Coverage sweep: modelprof on real model families, built from code with random weights (nothing is downloaded).

    python benchmarks/coverage.py [--family torchvision|timm|transformers|recurrent ...] [--only NAME ...]
                                  [-o docs/coverage.md]

Needs torchvision, timm and transformers (``pip install -e '.[test]'`` installs them). For every model it runs
``modelprof.count_costs`` and checks what the issue "Every real model counts" asks: no op left uncounted, rows
summing exactly to the totals, the parameter count equal to ``sum(p.numel())``; it also runs PyTorch's
FlopCounterMode on the same call and reports MAdd / FlopCounterMode FLOPs (both count a multiply-add as two; the
ratio is above 1 by the elementwise work FlopCounterMode leaves out, and "—" where it sees nothing).
A model that cannot be built or run here is listed with the reason, never dropped.

With ``--train`` every model whose forward counts also counts a training step (forward, the sum of its float
outputs as the loss, backward, AdamW), on the meta device (shapes only: a step there counts what it counts on CPU,
see ``benchmarks/train_meta_vs_cpu.py``; a model that cannot run on meta is counted on CPU): no op uncounted and
rows summing exactly again. On a sample of the smaller models (``--memtracker N``, default 40, spread evenly over the
families) the step also runs on CPU under PyTorch's ``MemTracker``, two steps as in a training loop, and its peak is
set beside modelprof's.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import io
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# torchvision's compiled ops do not load against the CPU build of torch used here; its models do not need them.
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import modelprof  # noqa: E402
from modelprof.metrics import KEYS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memtracker import memtracker_peak, sum_of_outputs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: The models MemTracker is run on (on CPU, two real training steps) have at most this many parameters.
MEMTRACKER_PARAMS = 30_000_000


@dataclass
class Case:
    """One model to sweep: its family, name, a builder and an input maker (args, kwargs)."""

    family: str
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple[tuple, dict]]
    kind: str = ""
    train_inputs: Callable[[], tuple[tuple, dict]] | None = None  #: a training step's, where they differ


@dataclass
class Outcome:
    case: Case
    params: int = 0
    flops: int = 0
    madd: int = 0
    rows_add_up: bool = False
    params_exact: bool = False
    unsupported: dict | None = None
    seconds: float = 0.0
    fcm_ratio: float | None = None
    error: str = ""
    train: TrainOutcome | None = None


@dataclass
class TrainOutcome:
    """A training step of the same model: where it was counted, its checks, and the peak against MemTracker."""

    device: str = "meta"
    batch: int = 1
    bwd_flops: int = 0
    rows_add_up: bool = False
    unsupported: dict | None = None
    seconds: float = 0.0
    peak: int = 0
    memtracker: int | None = None
    error: str = ""

    @property
    def peak_ratio(self) -> float | None:
        return self.peak / self.memtracker if self.memtracker else None


def image(size: int = 224, channels: int = 3) -> Callable[[], tuple[tuple, dict]]:
    return lambda: ((torch.randn(1, channels, size, size),), {})


# ----------------------------------------------------------------------------------------------------------------
# torchvision
# ----------------------------------------------------------------------------------------------------------------


def detection_targets() -> tuple[tuple, dict]:
    """A detection model's training inputs: the images and a box with its label for each (it computes its losses)."""
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0]]), "labels": torch.tensor([1])}]
    return ([torch.rand(3, 224, 224)], targets), {}


def torchvision_cases() -> list[Case]:
    from torchvision import models

    cases = []
    for name in models.list_models(module=models):
        size = 299 if name == "inception_v3" else 224
        cases.append(Case("torchvision", name, lambda n=name: models.get_model(n, weights=None), image(size),
                          "classification"))
    for name in models.list_models(module=models.segmentation):
        cases.append(Case("torchvision", name, lambda n=name: models.get_model(n, weights=None,
                                                                           weights_backbone=None),
                          image(224), "segmentation"))
    for name in models.list_models(module=models.video):
        frames, size = (16, 224) if name.startswith(("mvit", "s3d", "swin3d")) else (8, 112)
        cases.append(Case("torchvision", name, lambda n=name: models.get_model(n, weights=None),
                          lambda f=frames, s=size: ((torch.randn(1, 3, f, s, s),), {}), "video"))
    for name in models.list_models(module=models.optical_flow):
        cases.append(Case("torchvision", name, lambda n=name: models.get_model(n, weights=None),
                          lambda: ((torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)),
                                   {"num_flow_updates": 2}), "optical flow (2 updates)"))
    for name in models.list_models(module=models.detection):
        cases.append(Case("torchvision", name, lambda n=name: models.get_model(n, weights=None,
                                                                           weights_backbone=None),
                          lambda: (([torch.rand(3, 224, 224)],), {}), "detection", detection_targets))
    return cases


# ----------------------------------------------------------------------------------------------------------------
# timm
# ----------------------------------------------------------------------------------------------------------------

TIMM = (
    # convnets
    "resnet18", "resnet50d", "resnext50_32x4d", "seresnet50", "skresnet18", "res2net50_26w_4s", "resnest14d",
    "regnetx_002", "regnety_004", "densenet121", "dla34", "dpn68", "vgg11_bn", "inception_v3", "inception_v4",
    "xception41", "efficientnet_b0", "efficientnetv2_rw_t", "tf_efficientnet_lite0", "mixnet_s", "mnasnet_100",
    "ghostnet_100", "ghostnetv2_100", "hrnet_w18_small", "cspdarknet53", "cspresnet50", "darknet53",
    "rexnet_100", "nfnet_f0", "nf_resnet26", "convnext_atto", "convnextv2_atto", "repvgg_a0", "selecsls42b",
    "tresnet_m", "hardcorenas_a", "gernet_s", "resnetrs50", "res2next50", "vovnet39a", "ese_vovnet19b_dw",
    "rdnet_tiny", "inception_next_atto", "hgnet_tiny", "hgnetv2_b0", "fastvit_t8", "repghostnet_050",
    # mobile
    "mobilenetv2_050", "mobilenetv3_small_050", "mobilenetv4_conv_small", "lcnet_050", "efficientvit_b0",
    "efficientvit_m0", "mobilevit_xxs", "mobilevitv2_050", "mobileone_s0", "tinynet_e", "edgenext_xx_small",
    "efficientformer_l1", "efficientformerv2_s0", "repvit_m0_9", "starnet_s050", "shvit_s1",
    # transformers
    "vit_tiny_patch16_224", "vit_small_patch32_224", "vit_base_patch16_clip_224", "deit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224", "deit3_small_patch16_224", "beit_base_patch16_224", "beitv2_base_patch16_224",
    "swin_tiny_patch4_window7_224", "swinv2_cr_tiny_224", "cait_xxs24_224", "xcit_nano_12_p16_224", "pit_ti_224",
    "tnt_s_patch16_224", "twins_svt_small", "crossvit_tiny_240", "pvt_v2_b0", "eva02_tiny_patch14_224",
    "flexivit_small", "levit_128s", "nest_tiny", "sequencer2d_s", "visformer_tiny", "maxvit_tiny_tf_224",
    "davit_tiny", "focalnet_tiny_srf", "gcvit_xxtiny", "hiera_tiny_224", "vitamin_small_224", "tiny_vit_5m_224",
    "poolformer_s12", "poolformerv2_s12", "caformer_s18", "convformer_s18", "mvitv2_tiny", "volo_d1_224",
    "vit_little_patch16_reg4_gap_256", "samvit_base_patch16",
    # MLP
    "mixer_s32_224", "gmlp_ti16_224", "resmlp_12_224", "gmixer_12_224",
    # hybrids
    "coat_lite_tiny", "coatnet_0_rw_224", "convit_tiny", "vit_small_r26_s32_224", "botnet26t_256",
    "halonet26t", "lambda_resnet26t", "sebotnet33ts_256", "nextvit_small", "fastvit_sa12",
)


def timm_cases() -> list[Case]:
    import timm

    cases = []
    for name in TIMM:
        def build(n: str = name) -> nn.Module:
            return timm.create_model(n, pretrained=False)

        def inputs(n: str = name) -> tuple[tuple, dict]:
            size = timm.models.get_pretrained_cfg(n).input_size if timm.models.get_pretrained_cfg(n) else (3, 224,
                                                                                                           224)
            return (torch.randn(1, *size),), {}

        cases.append(Case("timm", name, build, inputs))
    return cases


# ----------------------------------------------------------------------------------------------------------------
# transformers (small configs, random weights)
# ----------------------------------------------------------------------------------------------------------------

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
         "vocab_size": 1000, "max_position_embeddings": 128, "pad_token_id": 0, "bos_token_id": 1,
         "eos_token_id": 2}
SEQ = 32


def tokens(batch: int = 1, seq: int = SEQ) -> Callable[[], tuple[tuple, dict]]:
    return lambda: ((), {"input_ids": torch.randint(0, 1000, (batch, seq))})


def seq2seq() -> tuple[tuple, dict]:
    return (), {"input_ids": torch.randint(0, 1000, (1, SEQ)), "decoder_input_ids": torch.randint(0, 1000, (1, 8))}


def pixels(size: int = 32) -> Callable[[], tuple[tuple, dict]]:
    return lambda: ((), {"pixel_values": torch.randn(1, 3, size, size)})


#: (name, config class, model class, config overrides, inputs, kind)
HF: tuple[tuple[str, str, str, dict, Callable[[], tuple[tuple, dict]], str], ...] = (
    ("BERT", "BertConfig", "BertModel", {}, tokens(), "encoder"),
    ("RoBERTa", "RobertaConfig", "RobertaModel", {}, tokens(), "encoder"),
    ("DistilBERT", "DistilBertConfig", "DistilBertModel", {"dim": 64, "hidden_dim": 128, "n_layers": 2,
                                                             "n_heads": 4}, tokens(), "encoder"),
    ("ALBERT", "AlbertConfig", "AlbertModel", {"embedding_size": 32}, tokens(), "encoder"),
    ("ELECTRA", "ElectraConfig", "ElectraModel", {"embedding_size": 32}, tokens(), "encoder"),
    ("DeBERTa-v2", "DebertaV2Config", "DebertaV2Model", {}, tokens(), "encoder"),
    ("DeBERTa", "DebertaConfig", "DebertaModel", {}, tokens(), "encoder"),
    ("XLM-RoBERTa", "XLMRobertaConfig", "XLMRobertaModel", {}, tokens(), "encoder"),
    ("MPNet", "MPNetConfig", "MPNetModel", {}, tokens(), "encoder"),
    ("ModernBERT", "ModernBertConfig", "ModernBertModel", {"global_attn_every_n_layers": 2, "local_attention": 16},
     tokens(), "encoder"),
    ("ConvBERT", "ConvBertConfig", "ConvBertModel", {"embedding_size": 64}, tokens(), "encoder"),
    ("Funnel", "FunnelConfig", "FunnelModel", {"block_sizes": [1, 1], "d_model": 64, "n_head": 4, "d_head": 16,
                                               "d_inner": 128, "num_hidden_layers": None,
                                               "num_attention_heads": None}, tokens(), "encoder"),
    ("GPT-2", "GPT2Config", "GPT2LMHeadModel", {}, tokens(), "decoder"),
    ("GPT-Neo", "GPTNeoConfig", "GPTNeoForCausalLM", {"attention_types": [[["global", "local"], 1]],
                                                      "window_size": 16}, tokens(), "decoder"),
    ("GPT-J", "GPTJConfig", "GPTJForCausalLM", {"rotary_dim": 8}, tokens(), "decoder (rotary)"),
    ("GPT-NeoX", "GPTNeoXConfig", "GPTNeoXForCausalLM", {}, tokens(), "decoder (rotary)"),
    ("OPT", "OPTConfig", "OPTForCausalLM", {"ffn_dim": 128, "word_embed_proj_dim": 64}, tokens(), "decoder"),
    ("BLOOM", "BloomConfig", "BloomForCausalLM", {"n_layer": 2, "n_head": 4}, tokens(), "decoder (ALiBi)"),
    ("Falcon", "FalconConfig", "FalconForCausalLM", {}, tokens(), "decoder"),
    ("Llama", "LlamaConfig", "LlamaForCausalLM", {"num_key_value_heads": 2}, tokens(), "decoder (GQA, rotary)"),
    ("Mistral", "MistralConfig", "MistralForCausalLM", {"num_key_value_heads": 2, "sliding_window": 16},
     tokens(), "decoder (GQA, sliding window)"),
    ("Qwen2", "Qwen2Config", "Qwen2ForCausalLM", {"num_key_value_heads": 2}, tokens(), "decoder (GQA)"),
    ("Qwen3", "Qwen3Config", "Qwen3ForCausalLM", {"num_key_value_heads": 2, "head_dim": 16}, tokens(),
     "decoder (GQA, qk-norm)"),
    ("Gemma", "GemmaConfig", "GemmaForCausalLM", {"num_key_value_heads": 1, "head_dim": 16}, tokens(),
     "decoder (MQA)"),
    ("Gemma2", "Gemma2Config", "Gemma2ForCausalLM", {"num_key_value_heads": 2, "head_dim": 16,
                                                     "sliding_window": 16}, tokens(), "decoder (soft-capping)"),
    ("Phi", "PhiConfig", "PhiForCausalLM", {}, tokens(), "decoder (partial rotary)"),
    ("Phi-3", "Phi3Config", "Phi3ForCausalLM", {"num_key_value_heads": 2}, tokens(), "decoder"),
    ("StableLM", "StableLmConfig", "StableLmForCausalLM", {"num_key_value_heads": 2}, tokens(), "decoder"),
    ("Starcoder2", "Starcoder2Config", "Starcoder2ForCausalLM", {"num_key_value_heads": 2}, tokens(), "decoder"),
    ("OLMo", "OlmoConfig", "OlmoForCausalLM", {}, tokens(), "decoder"),
    ("Cohere", "CohereConfig", "CohereForCausalLM", {"num_key_value_heads": 2}, tokens(), "decoder"),
    ("Mixtral", "MixtralConfig", "MixtralForCausalLM", {"num_key_value_heads": 2, "num_local_experts": 4,
                                                        "num_experts_per_tok": 2}, tokens(), "mixture of experts"),
    ("Qwen2-MoE", "Qwen2MoeConfig", "Qwen2MoeForCausalLM", {"num_key_value_heads": 2, "num_experts": 4,
                                                             "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                                                             "shared_expert_intermediate_size": 64},
     tokens(), "mixture of experts"),
    ("OLMoE", "OlmoeConfig", "OlmoeForCausalLM", {"num_experts": 4, "num_experts_per_tok": 2}, tokens(),
     "mixture of experts"),
    ("T5", "T5Config", "T5Model", {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_layers": 2, "num_heads": 4},
     seq2seq, "encoder-decoder"),
    ("BART", "BartConfig", "BartModel", {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2,
                                         "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                                         "encoder_ffn_dim": 128, "decoder_ffn_dim": 128}, seq2seq,
     "encoder-decoder"),
    ("mBART", "MBartConfig", "MBartModel", {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2,
                                            "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                                            "encoder_ffn_dim": 128, "decoder_ffn_dim": 128}, seq2seq,
     "encoder-decoder"),
    ("Pegasus", "PegasusConfig", "PegasusModel", {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2,
                                                  "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                                                  "encoder_ffn_dim": 128, "decoder_ffn_dim": 128}, seq2seq,
     "encoder-decoder"),
    ("Marian", "MarianConfig", "MarianMTModel", {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2,
                                                 "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                                                 "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
                                                 "decoder_start_token_id": 0, "pad_token_id": 1}, seq2seq,
     "encoder-decoder"),
    ("Whisper", "WhisperConfig", "WhisperModel", {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2,
                                                  "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                                                  "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
                                                  "num_mel_bins": 16, "max_source_positions": 50,
                                                  "decoder_start_token_id": 1},
     lambda: ((), {"input_features": torch.randn(1, 16, 100), "decoder_input_ids": torch.randint(0, 1000, (1, 8))}),
     "speech"),
    ("wav2vec2", "Wav2Vec2Config", "Wav2Vec2Model", {"conv_dim": (32, 32), "conv_stride": (5, 2),
                                                     "conv_kernel": (10, 3), "num_conv_pos_embeddings": 16,
                                                     "num_conv_pos_embedding_groups": 4},
     lambda: ((torch.randn(1, 4000),), {}), "speech"),
    ("HuBERT", "HubertConfig", "HubertModel", {"conv_dim": (32, 32), "conv_stride": (5, 2), "conv_kernel": (10, 3),
                                               "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4},
     lambda: ((torch.randn(1, 4000),), {}), "speech"),
    ("ViT", "ViTConfig", "ViTModel", {"image_size": 32, "patch_size": 8}, pixels(32), "vision"),
    ("DeiT", "DeiTConfig", "DeiTModel", {"image_size": 32, "patch_size": 8}, pixels(32), "vision"),
    ("BEiT", "BeitConfig", "BeitModel", {"image_size": 32, "patch_size": 8}, pixels(32), "vision"),
    ("Swin", "SwinConfig", "SwinModel", {"image_size": 32, "patch_size": 4, "embed_dim": 16, "depths": [1, 1],
                                         "num_heads": [2, 2], "window_size": 4, "num_hidden_layers": None,
                                         "num_attention_heads": None, "hidden_size": None}, pixels(32), "vision"),
    ("ConvNeXt", "ConvNextConfig", "ConvNextModel", {"hidden_sizes": [16, 32], "depths": [1, 1],
                                                     "num_stages": 2}, pixels(32), "vision"),
    ("SegFormer", "SegformerConfig", "SegformerModel", {"num_encoder_blocks": 2, "depths": [1, 1],
                                                        "sr_ratios": [2, 1], "hidden_sizes": [16, 32],
                                                        "num_attention_heads": [1, 2], "patch_sizes": [7, 3],
                                                        "strides": [4, 2], "mlp_ratios": [2, 2]},
     pixels(32), "vision"),
    ("CLIP", "CLIPConfig", "CLIPModel", {"text_config": {**SMALL}, "vision_config": {**SMALL, "image_size": 32,
                                                                                    "patch_size": 8},
                                         "projection_dim": 32},
     lambda: ((), {"input_ids": torch.randint(0, 1000, (1, 16)), "pixel_values": torch.randn(1, 3, 32, 32)}),
     "vision-language"),
    ("Mamba", "MambaConfig", "MambaForCausalLM", {"state_size": 8, "expand": 2, "conv_kernel": 4}, tokens(),
     "recurrent (state space)"),
    ("RWKV", "RwkvConfig", "RwkvForCausalLM", {"attention_hidden_size": 64, "context_length": 128}, tokens(),
     "recurrent"),
)


def hf_cases() -> list[Case]:
    import transformers

    cases = []
    for name, config_name, model_name, overrides, inputs, kind in HF:
        def build(c: str = config_name, m: str = model_name, o: dict = overrides) -> nn.Module:
            settings = {k: v for k, v in {**SMALL, **o}.items() if v is not None}  # None drops a SMALL key
            config = getattr(transformers, c)(**settings)
            return getattr(transformers, m)(config)

        cases.append(Case("transformers", name, build, inputs, kind))
    return cases


# ----------------------------------------------------------------------------------------------------------------
# recurrent models
# ----------------------------------------------------------------------------------------------------------------


class LSTMLanguageModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(1000, 64)
        self.lstm = nn.LSTM(64, 128, num_layers=2, batch_first=True)
        self.head = nn.Linear(128, 1000)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(tokens))[0])


class BiGRUTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(1000, 64)
        self.gru = nn.GRU(64, 64, bidirectional=True, batch_first=True)
        self.head = nn.Linear(128, 9)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(self.embed(tokens))[0])


class CellLoop(nn.Module):
    """An LSTMCell and a GRUCell unrolled by hand in Python, as seq2seq decoders do."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTMCell(32, 64)
        self.gru = nn.GRUCell(64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = torch.zeros(x.shape[0], 64)
        outputs = []
        for step in range(x.shape[1]):
            h, c = self.lstm(x[:, step], (h, c))
            outputs.append(self.gru(h))
        return torch.stack(outputs, 1)


def recurrent_cases() -> list[Case]:
    return [
        Case("recurrent", "LSTM language model (2 layers)", LSTMLanguageModel,
             lambda: ((torch.randint(0, 1000, (1, SEQ)),), {})),
        Case("recurrent", "bidirectional GRU tagger", BiGRUTagger, lambda: ((torch.randint(0, 1000, (1, SEQ)),), {})),
        Case("recurrent", "RNN (tanh, 3 layers)", lambda: nn.RNN(32, 64, num_layers=3, batch_first=True),
             lambda: ((torch.randn(1, SEQ, 32),), {})),
        Case("recurrent", "LSTMCell + GRUCell loop", CellLoop, lambda: ((torch.randn(1, 12, 32),), {})),
    ]


FAMILIES: dict[str, Callable[[], list[Case]]] = {
    "torchvision": torchvision_cases, "timm": timm_cases, "transformers": hf_cases, "recurrent": recurrent_cases,
}

# ----------------------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def flop_counter_flops(model: nn.Module, args: tuple, kwargs: dict) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(*args, **kwargs)
    return counter.get_total_flops()


def run_case(case: Case, train: bool = False, compare: bool = False) -> Outcome:
    """Build, count and check one model (and a training step of it, with ``train``)."""
    outcome = Outcome(case)
    torch.manual_seed(0)
    try:
        with quiet():
            model = case.build().eval()
            args, kwargs = case.inputs()
    except Exception as exc:  # cannot be built here: say so in the table
        outcome.error = f"not built here: {type(exc).__name__}: {modelprof_one_line(exc)}"
        return outcome
    try:
        started = time.perf_counter()
        with quiet():
            report = modelprof.count_costs(model, args, kwargs)
        outcome.seconds = time.perf_counter() - started
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {modelprof_one_line(exc)}"
        return outcome
    total = report.total
    outcome.params, outcome.flops, outcome.madd = total.params, total.flops, total.madd
    outcome.rows_add_up = all(sum(getattr(r, k) for r in report.layers) == getattr(total, k) for k in KEYS
                              if k != "params")
    outcome.params_exact = total.params == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    outcome.unsupported = report.unsupported
    with contextlib.suppress(Exception), quiet():
        reference = flop_counter_flops(model, args, kwargs)
        outcome.fcm_ratio = total.madd / reference if reference else None
    if train:
        if case.train_inputs is not None:
            args, kwargs = case.train_inputs()
        outcome.train = train_case(model, args, kwargs, compare and total.params <= MEMTRACKER_PARAMS)
    del model
    gc.collect()
    return outcome


def _to(device: str, args: tuple, kwargs: dict, batch: int) -> tuple[tuple, dict]:
    """The inputs on ``device``, repeated along the first dimension to ``batch``."""
    from torch.utils._pytree import tree_map

    def move(value: object) -> object:
        if not isinstance(value, torch.Tensor):
            return value
        value = value.repeat(batch, *([1] * (value.dim() - 1))) if batch > 1 and value.dim() else value
        return value.to(device)

    return tree_map(move, (args, kwargs))


def train_case(model: nn.Module, args: tuple, kwargs: dict, compare: bool) -> TrainOutcome:
    """Count a training step of ``model`` (on meta, else on CPU; at batch 1, else 2 where batch norm needs two
    samples); with ``compare``, also MemTracker's peak of the same step on CPU."""
    from modelprof import Training, Workload

    outcome, workload = TrainOutcome(), Workload(Training(loss=sum_of_outputs))
    report = None
    for device, batch in (("meta", 1), ("meta", 2), ("cpu", 1), ("cpu", 2)):
        try:
            subject = copy.deepcopy(model).to(device) if device == "meta" else copy.deepcopy(model)
            inputs, named = _to(device, args, kwargs, batch)
            started = time.perf_counter()
            with quiet():
                report = modelprof.count_costs(subject, inputs, named, workload=workload)
            outcome.seconds, outcome.device, outcome.batch = time.perf_counter() - started, device, batch
            break
        except Exception as exc:
            outcome.error = f"{type(exc).__name__}: {modelprof_one_line(exc)}"
    if report is None:
        return outcome
    outcome.error = ""
    total = report.total
    outcome.bwd_flops, outcome.unsupported = total.bwd_flops, report.unsupported
    outcome.rows_add_up = all(sum(getattr(r, k) for r in report.layers) == getattr(total, k)
                              for k in report.total.values if k != "params")
    outcome.peak = report.memory.peak if report.memory else 0
    if compare:
        with contextlib.suppress(Exception), quiet():
            outcome.memtracker = memtracker_peak(model, *_to("cpu", args, kwargs, outcome.batch))
    return outcome


def modelprof_one_line(exc: BaseException) -> str:
    from modelprof.errors import one_line

    return one_line(exc)


def markdown(outcomes: list[Outcome], command: str) -> str:
    counted = [o for o in outcomes if not o.error]
    clean = [o for o in counted if not o.unsupported and o.rows_add_up and o.params_exact]
    lines = [
        "# Coverage: modelprof on real model families", "",
        "Every model is built from code with random weights (nothing is downloaded) and counted with",
        "`modelprof.count_costs` at batch 1. Made with:", "", "```", command, "```", "",
        f"torch {torch.__version__}; {len(outcomes)} models, {len(counted)} counted, {len(clean)} with no op "
        "uncounted, rows summing exactly to the totals and parameters equal to `sum(p.numel())`.", "",
    ]
    trained = [o for o in counted if o.train is not None]
    if trained:
        lines += _train_summary(trained)
    lines += [
        "MAdd / FCM is modelprof's MAdd over FlopCounterMode's FLOPs on the same call (both count a multiply-add "
        "as two). It is a little above 1 by the elementwise work (norms, activations, softmax, adds) "
        "FlopCounterMode leaves out, and well above 1 where FlopCounterMode misses products: attention on CPU "
        "(nn.MultiheadAttention and SDPA, as in ViT), mixture-of-experts `_grouped_mm` (Mixtral, OLMoE, "
        "Qwen2-MoE) and recurrent layers (LSTM, GRU). — means FlopCounterMode counted nothing or failed on the "
        "model.", "",
    ]
    for family in dict.fromkeys(o.case.family for o in outcomes):
        rows = [o for o in outcomes if o.case.family == family]
        head = "| model | kind | params | Flops | rows = total | unsupported ops | time [s] | MAdd / FCM |"
        rule = "|---|---|---:|---:|---|---|---:|---:|"
        if trained:
            head += " step: backward Flops | step: rows = total | step: unsupported ops | step: peak | peak / " \
                    "MemTracker |"
            rule += "---:|---|---|---:|---:|"
        lines += [f"## {family} ({len(rows)} models)", "", head, rule]
        lines += [_line(o, bool(trained)) for o in rows]
        lines.append("")
    return "\n".join(lines)


def _train_summary(trained: list[Outcome]) -> list[str]:
    steps = [o.train for o in trained if not o.train.error]
    clean = [t for t in steps if not t.unsupported and t.rows_add_up]
    compared = [t for t in steps if t.peak_ratio is not None]
    worst = max((abs(t.peak_ratio - 1) for t in compared), default=0.0)
    on_cpu = sum(t.device == "cpu" for t in steps)
    batch2 = sum(t.batch == 2 for t in steps)
    return [
        f"Training step (`--train`): {len(steps)} of the {len(trained)} counted models counted a step (forward, the "
        f"sum of the float outputs as loss, backward, AdamW), {len(clean)} with no op uncounted and rows summing "
        f"exactly; on the meta device, {on_cpu} on CPU where meta cannot run them, {batch2} at batch 2 where "
        "batch norm needs two samples. The peak is set beside PyTorch's MemTracker on the same two CPU steps for "
        f"{len(compared)} models with at most {MEMTRACKER_PARAMS:,} parameters: the largest gap is "
        f"{100 * worst:.2f} %.", "",
    ]


def _line(o: Outcome, trained: bool) -> str:
    if "Couldn't load custom C++ ops" in o.error:
        o.error = ("cannot run here: torchvision's compiled ops (nms, roi_align) do not load against this CPU build "
                   "of torch")
    if o.error:
        return f"| {o.case.name} | {o.case.kind} | | | | {o.error.replace('|', '/')[:200]} | | |" + (
            " | | | | |" if trained else "")
    unsupported = ", ".join(f"`{k}` ×{v}" for k, v in (o.unsupported or {}).items()) or "none"
    ratio = f"{o.fcm_ratio:.3f}" if o.fcm_ratio else "—"
    exact = "yes" if o.rows_add_up and o.params_exact else "NO"
    line = (f"| {o.case.name} | {o.case.kind} | {o.params:,} | {o.flops:,} | {exact} | {unsupported} "
            f"| {o.seconds:.2f} | {ratio} |")
    if not trained:
        return line
    t = o.train
    if t is None or t.error:
        return line + f" | | | {(t.error if t else '').replace('|', '/')[:160]} | | |"
    where = "" if (t.device, t.batch) == ("meta", 1) else f" ({t.device}, batch {t.batch})"
    step_unsupported = ", ".join(f"`{k}` ×{v}" for k, v in (t.unsupported or {}).items()) or "none"
    peak_ratio = f"{t.peak_ratio:.4f}" if t.peak_ratio is not None else ""
    return line + (f" {t.bwd_flops:,} | {'yes' if t.rows_add_up else 'NO'}{where} | {step_unsupported} | "
                   f"{t.peak:,} | {peak_ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", choices=list(FAMILIES))
    parser.add_argument("--only", action="append", help="model names to run (default: all)")
    parser.add_argument("-o", "--output", help="write the Markdown table here (default: stdout)")
    parser.add_argument("--train", action="store_true", help="also count a training step of every model")
    parser.add_argument("--memtracker", type=int, default=40, metavar="N",
                        help="with --train: set the peak beside MemTracker's on this many of the smaller models, "
                        "spread evenly over the families")
    options = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    outcomes = []
    families = options.family or list(FAMILIES)
    per_family = -(-options.memtracker // len(families))  # the MemTracker sample, spread over the families
    for family in families:
        for case in FAMILIES[family]():
            if options.only and case.name not in options.only:
                continue
            compared = sum(o.case.family == family and o.train is not None and o.train.memtracker is not None
                           for o in outcomes)
            outcome = run_case(case, options.train, compared < per_family)
            status = outcome.error or (", ".join(outcome.unsupported) if outcome.unsupported else "ok")
            if outcome.train is not None:
                t = outcome.train
                status += f"; step {t.device} {t.seconds:.2f}s " + (t.error or (", ".join(t.unsupported) or "ok"))
                if t.peak_ratio is not None:
                    status += f", peak/MemTracker {t.peak_ratio:.4f}"
            print(f"{family:12} {case.name:40} {outcome.seconds:6.2f}s {status}", file=sys.stderr, flush=True)
            outcomes.append(outcome)
    command = "python benchmarks/coverage.py " + " ".join(sys.argv[1:])
    text = markdown(outcomes, command.strip())
    if options.output:
        Path(options.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
