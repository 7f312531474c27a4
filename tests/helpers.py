"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

import dataclasses

import numpy as np

from raspsynth.program.sampler import SamplerConfig, sample_program

# Tests compare RASP semantics with tracr's compiled model, so they draw from
# the default distribution less the Maps of numerical SOps, which tracr's
# discretising MLPs compile wrongly near some inputs (the data pipeline checks
# those on every input and drops miscompiles; these raw samples are unchecked).
FAITHFUL = SamplerConfig(p_numerical_input_map=0.0)


def random_programs(n: int, seed: int, config: SamplerConfig = FAITHFUL):
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


def crashing_worker(path: str, mode: str, budget_s: float, seed: int, config=None) -> dict:
    """A `synthesize_many` worker that kills its process on models named
    'crash*' (as a segfault would) and sleeps past any budget on 'hang*'."""
    import os
    import time
    from pathlib import Path

    from raspsynth.batch import synthesize_file

    if Path(path).name.startswith("crash"):
        os._exit(3)
    if Path(path).name.startswith("hang"):
        time.sleep(600)
    return synthesize_file(path, mode, budget_s, seed, config)


def unreadable(model, seed: int = 0):
    """`model` rotated, plus a constant bias written into an extra residual
    dimension nothing reads: the same outputs, but tracr's layout in no basis
    (tracr compiles no biases), so only enumeration can recover it."""
    turned = model.rotated(seed)
    forward = np.eye(turned.d_model, turned.d_model + 1)
    wide = turned.in_basis(forward, forward.T)
    bias = np.zeros(wide.d_model)
    bias[-1] = 1.0
    layers = (dataclasses.replace(wide.layers[0], mlp_out_b=bias), *wide.layers[1:])
    return dataclasses.replace(wide, layers=layers)
