"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

import numpy as np

from raspsynth.program.sampler import SamplerConfig, sample_program
from raspsynth.tracr_bridge.model import HeadWeights, LayerWeights, Model


def random_programs(n: int, seed: int, config: SamplerConfig = SamplerConfig()):
    """n sampled programs, at least a fifth of them with numerical output."""
    rng = np.random.default_rng(seed)
    out, numerical = [], 0
    while len(out) < n:
        sample = sample_program(rng, config)
        is_numerical = sample.program.encoding(sample.program.output) == "numerical"
        if not is_numerical and numerical < n // 5 and len(out) >= n - n // 5:
            continue
        numerical += is_numerical
        out.append(sample)
    return out


def rotated(model: Model, seed: int) -> Model:
    """The same function with the residual stream rotated by a random orthogonal
    matrix: behaviour kept, tracr's one-hot layout destroyed."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(model.d_model, model.d_model)))
    layers = [
        LayerWeights(
            tuple(
                HeadWeights(
                    q.T @ h.query_w,
                    h.query_b,
                    q.T @ h.key_w,
                    h.key_b,
                    q.T @ h.value_w,
                    h.value_b,
                    h.output_w @ q,
                )
                for h in layer.heads
            ),
            layer.attn_output_b @ q,
            q.T @ layer.mlp_in_w,
            layer.mlp_in_b,
            layer.mlp_out_w @ q,
            layer.mlp_out_b @ q,
        )
        for layer in model.layers
    ]
    return Model(model.token_embed @ q, model.pos_embed @ q, tuple(layers), q.T @ model.unembed, model.spec)
