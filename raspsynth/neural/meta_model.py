"""The meta-model: residual-dimension tokens in, program-token logits out.

In: batches of `EncodedWeights` (padded to the batch's largest d_model) and
program token ids. Out: next-token logits [B, T, V].

Encoder: each dimension's features through a linear layer, then transformer
layers with *no positional encoding* (the dimensions are a set) whose
attention logits get a learned per-head bias from the pairwise features.
Decoder: a causal transformer over program tokens (positions encoded: the
program is a sequence) cross-attending to the encoded dimensions, padding
masked. Permuting the residual permutes the encoder's inputs and outputs
alike; cross-attention sums over them, so the logits do not change.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from raspsynth.neural.program_tokens import MAX_TOKENS, vocabulary
from raspsynth.neural.weight_encoding import FEATURES, PAIR_CHANNELS, EncodedWeights


@dataclasses.dataclass(frozen=True)
class MetaModelConfig:
    width: int = 128
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class _BiasedEncoderLayer(nn.Module):
    """Pre-norm self-attention over dimensions with an additive pair bias."""

    def __init__(self, config: MetaModelConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.norm1, self.norm2 = nn.LayerNorm(config.width), nn.LayerNorm(config.width)
        self.attention = nn.MultiheadAttention(config.width, config.heads, config.dropout, batch_first=True)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.width, 4 * config.width),
            nn.GELU(),
            nn.Linear(4 * config.width, config.width),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attention(h, h, h, attn_mask=bias, need_weights=False)[0]
        return x + self.feed_forward(self.norm2(x))


class MetaModel(nn.Module):
    def __init__(self, config: MetaModelConfig = MetaModelConfig()) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.embed_dims = nn.Sequential(nn.Linear(FEATURES, width), nn.GELU(), nn.Linear(width, width))
        self.pair_bias = nn.Linear(PAIR_CHANNELS, config.heads * config.encoder_layers)
        self.encoder = nn.ModuleList(_BiasedEncoderLayer(config) for _ in range(config.encoder_layers))
        self.encoder_norm = nn.LayerNorm(width)
        self.embed_tokens = nn.Embedding(len(vocabulary()), width)
        self.embed_positions = nn.Embedding(MAX_TOKENS, width)
        layer = nn.TransformerDecoderLayer(
            width, config.heads, 4 * width, config.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, config.decoder_layers)
        self.head = nn.Linear(width, len(vocabulary()))

    def encode(self, features: torch.Tensor, pairs: torch.Tensor, dim_mask: torch.Tensor) -> torch.Tensor:
        """features [B, D, F], pairs [B, D, D, P], dim_mask [B, D] (True = real)."""
        batch, dims = dim_mask.shape
        x = self.embed_dims(features)
        biases = self.pair_bias(pairs)  # [B, D, D, heads * layers]
        padding = torch.zeros(batch, 1, 1, dims, device=x.device, dtype=x.dtype)
        padding = padding.masked_fill(~dim_mask[:, None, None, :], float("-inf"))
        h = self.config.heads
        for i, layer in enumerate(self.encoder):
            bias = biases[..., i * h : (i + 1) * h].permute(0, 3, 1, 2) + padding  # [B, heads, D, D]
            x = layer(x, bias.reshape(batch * h, dims, dims))
        return self.encoder_norm(x)

    def decode(self, memory: torch.Tensor, dim_mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits [B, T, V] for token ids [B, T]."""
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        x = self.embed_tokens(tokens) + self.embed_positions(positions)[None]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), diagonal=1)
        x = self.decoder(
            x,
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=tokens == 0,
            memory_key_padding_mask=~dim_mask,
            tgt_is_causal=True,
        )
        return self.head(x)

    def forward(self, features, pairs, dim_mask, tokens) -> torch.Tensor:
        return self.decode(self.encode(features, pairs, dim_mask), dim_mask, tokens)


def collate(encoded: list[EncodedWeights], device: torch.device | str = "cpu"):
    """Pad a list of encodings to one batch: (features, pairs, dim_mask)."""
    dims = max(e.features.shape[0] for e in encoded)
    features = np.zeros((len(encoded), dims, FEATURES), dtype=np.float32)
    pairs = np.zeros((len(encoded), dims, dims, PAIR_CHANNELS), dtype=np.float32)
    mask = np.zeros((len(encoded), dims), dtype=bool)
    for i, e in enumerate(encoded):
        d = e.features.shape[0]
        features[i, :d], pairs[i, :d, :d], mask[i, :d] = e.features, e.pairs, True
    return (
        torch.from_numpy(features).to(device),
        torch.from_numpy(pairs).to(device),
        torch.from_numpy(mask).to(device),
    )
