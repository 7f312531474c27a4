"""Running single components of a model on hand-built residual vectors.

In: a `Model` and residual vectors assembled from known dimensions (the
constant `one`, one-hot value dimensions, numerical values). Out: what one
MLP layer or one attention head computes on them, and the values numerical
dimensions take when the whole model runs on probe inputs.

This is how the symbolic layer reads functions out of weights: each
component is probed alone, with exactly the residual vectors tracr's own
construction assumes, so the answers are the component's exact tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from raspsynth.tracr_bridge.model import HeadWeights, LayerWeights, Model
from raspsynth.tracr_bridge.probes import probe_inputs

# Weights below this are treated as absent when reading which dims a
# component touches (tracr's weights are exact small numbers or zero).
WEIGHT_EPS = 1e-6
# Observed numerical values are rounded to this many decimals to deduplicate.
VALUE_DECIMALS = 6
# Probe inputs used to observe numerical values, at most.
OBSERVATION_PROBES = 4000


def residual_vectors(d_model: int, rows: Iterable[Mapping[int, float]]) -> np.ndarray:
    """One float32 residual vector per mapping {dim: value}; other dims are zero."""
    rows = list(rows)
    x = np.zeros((len(rows), d_model), dtype=np.float32)
    for i, row in enumerate(rows):
        for dim, value in row.items():
            x[i, dim] = value
    return x


def mlp_response(layer: LayerWeights, x: np.ndarray) -> np.ndarray:
    """The MLP's residual update for residual vectors `x` [N, D]."""
    hidden = np.maximum(x @ layer.mlp_in_w + layer.mlp_in_b, 0.0)
    return hidden @ layer.mlp_out_w + layer.mlp_out_b


def width_response(
    layer: LayerWeights, d_model: int, one_dim: int | None, attention_dim: int, max_seq_len: int
) -> np.ndarray:
    """What a SelectorWidth's MLP writes [max_seq_len + 1, D] when its head
    writes 1/(w+1) into `attention_dim`, for each width w (tracr's encoding
    of the width before the MLP turns it into the width)."""
    one = {} if one_dim is None else {one_dim: 1.0}
    rows = [{**one, attention_dim: 1.0 / (w + 1)} for w in range(max_seq_len + 1)]
    return mlp_response(layer, residual_vectors(d_model, rows))


def counts_widths(written: np.ndarray) -> bool:
    """Whether one output dimension of `width_response` [max_seq_len + 1]
    holds the width w itself at every w (a numerical SelectorWidth)."""
    return bool(np.allclose(written, np.arange(len(written)), atol=1e-2))


def attention_score(head: HeadWeights, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Pre-softmax scores [..., Nq, Nk] between query and key residual vectors
    [..., N, D] (a batch of sequences, or one set of each)."""
    q = queries @ head.query_w + head.query_b
    k = keys @ head.key_w + head.key_b
    return (q @ np.swapaxes(k, -1, -2)) / np.float32(np.sqrt(q.shape[-1]))


def head_writes(head: HeadWeights, x: np.ndarray, causal: bool) -> np.ndarray:
    """What one head writes [B, T, D] when it runs alone on whole sequences
    `x` [B, T, D] of one length (BOS first): softmax attention, as the model's
    forward pass computes it, without the other heads."""
    scores = attention_score(head, x, x)
    if causal:
        scores = np.where(np.tril(np.ones(scores.shape[1:], dtype=bool)), scores, -np.inf)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = scores / scores.sum(axis=-1, keepdims=True)
    return (weights @ (x @ head.value_w + head.value_b)) @ head.output_w


def value_response(head: HeadWeights, x: np.ndarray) -> np.ndarray:
    """What the head writes for residual vectors `x` when it attends to them alone."""
    return (x @ head.value_w + head.value_b) @ head.output_w


def nonzero_rows(matrix: np.ndarray) -> frozenset[int]:
    return frozenset(np.nonzero(np.abs(matrix).max(axis=1) > WEIGHT_EPS)[0].tolist())


def nonzero_cols(matrix: np.ndarray) -> frozenset[int]:
    return frozenset(np.nonzero(np.abs(matrix).max(axis=0) > WEIGHT_EPS)[0].tolist())


class ResidualObservations:
    """The final residual stream at non-BOS positions over (at most
    OBSERVATION_PROBES of) the model's probe inputs, computed once. tracr
    writes each dimension once, so the final residual holds every SOp's value."""

    def __init__(self, model: Model, seed: int = 0) -> None:
        inputs = probe_inputs(
            model, exhaustive_bound=OBSERVATION_PROBES, n_random=OBSERVATION_PROBES, seed=seed
        )
        residuals = [residual[1:] for residual in model.residuals(inputs)]
        self.positions = np.concatenate(residuals).astype(np.float64)

    def values(self, dim: int) -> tuple[float, ...]:
        """Sorted distinct values (rounded to VALUE_DECIMALS) that `dim` takes."""
        return tuple(np.unique(np.round(self.positions[:, dim], VALUE_DECIMALS)).tolist())
