"""A five-input image-captioning model shaped like the reference material's:

    out = model(detections, boxs, grids, masks, captions)
    detections (bs, 50, 2048)  region features      boxs  (bs, 50, 4)    region boxes
    grids      (bs, 49, 2048)  grid features        masks (bs, 50, 49)   region-to-grid alignment
    captions   (bs, 19) int64  token ids

    modelprof stats examples/captioning.py:CaptionModel \
        --input 50,2048 --input 50,4 --input 49,2048 --input 50,49 --input 19:int64:10000
"""

import torch
import torch.nn.functional as F
from torch import nn


class CaptionModel(nn.Module):
    """Region and grid encoders, a cross-attention between them, and a one-layer caption decoder."""

    def __init__(self, vocab_size: int = 10000, d_model: int = 512, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.region_proj = nn.Linear(2048, d_model)
        self.box_proj = nn.Linear(4, d_model)
        self.grid_proj = nn.Linear(2048, d_model)
        self.encoder_norm = nn.LayerNorm(d_model)
        self.word_embedding = nn.Embedding(vocab_size, d_model)
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.feed_forward = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.ReLU(), nn.Linear(4 * d_model, d_model))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, vocab_size)

    def forward(self, detections, boxs, grids, masks, captions):
        regions = self.region_proj(detections) + self.box_proj(boxs)          # (bs, 50, d)
        grid = self.grid_proj(grids)                                            # (bs, 49, d)
        # each region attends to the grid cells it overlaps: masks weights the grid features
        aligned = torch.matmul(masks.softmax(dim=-1), grid)                     # (bs, 50, d)
        memory = self.encoder_norm(regions + aligned)
        words = self.word_embedding(captions)                                   # (bs, 19, d)
        q = self._split(self.query(words))
        k, v = (self._split(t) for t in self.key_value(memory).chunk(2, dim=-1))
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        hidden = self.decoder_norm(words + attended)
        hidden = hidden + self.feed_forward(hidden)
        return self.classifier(hidden).log_softmax(dim=-1)                     # (bs, 19, vocab)

    def _split(self, x):
        bs, length, dim = x.shape
        return x.view(bs, length, self.heads, dim // self.heads).transpose(1, 2)
