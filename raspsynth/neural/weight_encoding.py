"""Weight encoding: a model's weights as a set of residual-dimension tokens.

In: a `Model`. Out: `EncodedWeights`: one feature vector per residual
dimension [D, F] and pairwise features between dimensions [D, D, P].

Why per dimension: the residual's order carries nothing (tracr's layout is
arbitrary and `Model.permuted` shuffles it), so the encoder sees the
dimensions as an unordered set: a transformer with no positional encoding
across them, whose attention is biased by the pairwise features. Permuting
the residual permutes the rows of both arrays alike, and the encoder's
output, pooled by the decoder's cross-attention, does not change. Layers
*are* ordered, so each dimension's features list, layer by layer, how much
every sublayer reads and writes it.

Per dimension (F = FEATURES): its token-embedding column (rows in the
spec's input-vocab order, padded to MAX_VOCAB), position-embedding column
(MAX_POSITIONS), unembed row (MAX_OUTPUTS, plus a numerical-output flag),
and per layer (MAX_LAYERS) the norms and counts of the attention query, key,
value reads and output writes, and of the MLP reads and writes, and the
biases written to it.

Pairwise (P = PAIR_CHANNELS, log1p of absolute sums over layers and heads):
query-key coupling |W_Q W_K^T|, value-output routing |W_V W_O|, MLP paths
|W_in| |W_out|, and MLP co-reading |W_in| |W_in|^T.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from raspsynth.tracr_bridge.model import Model

MAX_VOCAB = 12
MAX_POSITIONS = 11
MAX_OUTPUTS = 16
MAX_LAYERS = 16
PER_LAYER = 10
FEATURES = MAX_VOCAB + MAX_POSITIONS + MAX_OUTPUTS + 1 + MAX_LAYERS * PER_LAYER
PAIR_CHANNELS = 4
EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class EncodedWeights:
    features: np.ndarray  # [D, FEATURES] float32
    pairs: np.ndarray  # [D, D, PAIR_CHANNELS] float32


def _pad(matrix: np.ndarray, width: int) -> np.ndarray:
    """Columns cut or zero-padded to `width`."""
    out = np.zeros((matrix.shape[0], width), dtype=np.float32)
    n = min(width, matrix.shape[1])
    out[:, :n] = matrix[:, :n]
    return out


def encode_weights(model: Model) -> EncodedWeights:
    d = model.d_model
    per_layer = np.zeros((d, MAX_LAYERS, PER_LAYER), dtype=np.float32)
    pairs = np.zeros((d, d, PAIR_CHANNELS), dtype=np.float64)
    for index, layer in enumerate(model.layers):
        q = np.abs(np.concatenate([h.query_w for h in layer.heads], axis=1))
        k = np.abs(np.concatenate([h.key_w for h in layer.heads], axis=1))
        v = np.abs(np.concatenate([h.value_w for h in layer.heads], axis=1))
        o = np.abs(np.concatenate([h.output_w for h in layer.heads], axis=0))
        mlp_in, mlp_out = np.abs(layer.mlp_in_w), np.abs(layer.mlp_out_w)
        if index < MAX_LAYERS:
            per_layer[:, index] = np.stack(
                [
                    q.sum(1),
                    k.sum(1),
                    v.sum(1),
                    o.sum(0),
                    layer.attn_output_b,
                    mlp_in.sum(1),
                    (mlp_in > EPS).sum(1),
                    mlp_out.sum(0),
                    (mlp_out > EPS).sum(0),
                    layer.mlp_out_b,
                ],
                axis=1,
            )
        for h in layer.heads:
            pairs[..., 0] += np.abs(h.query_w @ h.key_w.T)
            pairs[..., 1] += np.abs(h.value_w @ h.output_w)
        pairs[..., 2] += mlp_in @ mlp_out
        pairs[..., 3] += mlp_in @ mlp_in.T
    spec = model.spec
    numerical = np.full((d, 1), float(spec.numerical), dtype=np.float32)
    features = np.concatenate(
        [
            _pad(model.token_embed.T, MAX_VOCAB),
            _pad(model.pos_embed.T, MAX_POSITIONS),
            _pad(model.unembed, MAX_OUTPUTS),
            numerical,
            (np.sign(per_layer) * np.log1p(np.abs(per_layer))).reshape(d, MAX_LAYERS * PER_LAYER),
        ],
        axis=1,
        dtype=np.float32,
    )
    return EncodedWeights(features, np.log1p(pairs).astype(np.float32))
