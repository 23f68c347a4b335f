"""A LLaMA-style decoder (RMSNorm, rotary-free grouped-query attention through SDPA, SwiGLU MLP).

The default configuration is tiny; ``llama_70b`` has the shape of a 70-billion-parameter model (80 layers,
hidden 8192, MLP 28672, 64 query / 8 key-value heads, vocabulary 32000) and is meant for --device meta:

    modelprof stats examples/decoder.py:llama_70b --device meta --input 4096:int64:32000
"""

import torch.nn.functional as F
from torch import nn


class DecoderLayer(nn.Module):
    """RMSNorm -> grouped-query self-attention -> RMSNorm -> SwiGLU MLP, each with a residual add."""

    def __init__(self, dim: int, mlp_dim: int, heads: int, kv_heads: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.attn_norm = nn.RMSNorm(dim)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.mlp_norm = nn.RMSNorm(dim)
        self.gate_proj = nn.Linear(dim, mlp_dim, bias=False)
        self.up_proj = nn.Linear(dim, mlp_dim, bias=False)
        self.down_proj = nn.Linear(mlp_dim, dim, bias=False)

    def forward(self, x):
        bs, length, dim = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(bs, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(bs, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(bs, length, self.kv_heads, self.head_dim).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o_proj(attended.transpose(1, 2).reshape(bs, length, dim))
        h = self.mlp_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Decoder(nn.Module):
    """Token ids (bs, L) -> next-token logits (bs, L, vocab)."""

    def __init__(self, vocab_size: int = 1000, dim: int = 128, mlp_dim: int = 344, layers: int = 2,
                 heads: int = 4, kv_heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, mlp_dim, heads, kv_heads) for _ in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def llama_70b() -> Decoder:
    """The 70B configuration (about 69 billion parameters); build it on --device meta."""
    return Decoder(vocab_size=32000, dim=8192, mlp_dim=28672, layers=80, heads=64, kv_heads=8)
