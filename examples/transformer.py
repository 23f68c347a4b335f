"""A small transformer whose forward uses torch.matmul, the @ operator and F.scaled_dot_product_attention
directly, plus an interpolate and residual adds: the functional ops that module-hook counters miss.

    modelprof stats examples/transformer.py:TinyTransformer --input 32:int64:1000
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm attention block with hand-written attention (matmul) or SDPA."""

    def __init__(self, dim: int, heads: int, use_sdpa: bool) -> None:
        super().__init__()
        self.heads, self.use_sdpa = heads, use_sdpa
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        bs, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(bs, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if self.use_sdpa:
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dim // self.heads)
            attended = scores.softmax(dim=-1) @ v
        x = x + self.proj(attended.transpose(1, 2).reshape(bs, length, dim))
        return x + self.mlp(self.norm2(x))


class TinyTransformer(nn.Module):
    """Token ids (bs, L) -> logits (bs, 2L, vocab): two blocks, then the sequence is upsampled twofold."""

    def __init__(self, vocab_size: int = 1000, dim: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.blocks = nn.ModuleList([Block(dim, heads, use_sdpa=False), Block(dim, heads, use_sdpa=True)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied: counted once in the total

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        x = F.interpolate(x.transpose(1, 2), scale_factor=2, mode="linear").transpose(1, 2)
        return self.head(self.norm(x))
