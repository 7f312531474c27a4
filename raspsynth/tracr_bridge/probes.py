"""Probe inputs and output agreement between a program and a model.

In: a `Model` (and for `agreement`, a tracr program). Out: the probe input
set used for verification, and the fraction of probes on which the program,
compiled with the model's own spec, gives the model's outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from raspsynth.tracr_bridge.compile import compile_program
from raspsynth.tracr_bridge.model import Model, Token
from raspsynth.tracr_bridge.outputs import rows_equal

EXHAUSTIVE_BOUND = 10**5
RANDOM_PROBES = 2000
EXHAUSTIVE_PREFIX_LENGTH = 3


def count_inputs(vocab_size: int, max_seq_len: int) -> int:
    """Number of non-empty sequences of length <= max_seq_len."""
    return sum(vocab_size**length for length in range(1, max_seq_len + 1))


def probe_inputs(
    model: Model,
    exhaustive_bound: int = EXHAUSTIVE_BOUND,
    n_random: int = RANDOM_PROBES,
    seed: int = 0,
) -> list[tuple[Token, ...]]:
    """Inputs on which to compare a program with `model`.

    Every non-empty input when there are at most `exhaustive_bound` of them;
    otherwise every input up to the longest length L <= 3 that keeps those
    within `exhaustive_bound` (L = 3 up to vocab 46; none at vocab 10^5),
    plus `n_random` distinct seeded random inputs of lengths L+1 to
    max_seq_len.
    """
    vocab = model.spec.vocab
    max_len = model.spec.max_seq_len
    if count_inputs(len(vocab), max_len) <= exhaustive_bound:
        return _all_inputs(vocab, range(1, max_len + 1))
    prefix = 0
    while prefix < min(EXHAUSTIVE_PREFIX_LENGTH, max_len) and (
        count_inputs(len(vocab), prefix + 1) <= exhaustive_bound
    ):
        prefix += 1
    probes = _all_inputs(vocab, range(1, prefix + 1))
    rng = np.random.default_rng(seed)
    longer = list(range(prefix + 1, max_len + 1))
    available = count_inputs(len(vocab), max_len) - len(probes)
    sampled: dict[tuple[Token, ...], None] = {}
    while len(sampled) < min(n_random, available):
        length = int(rng.choice(longer))
        sampled[tuple(vocab[i] for i in rng.integers(len(vocab), size=length))] = None
    return probes + list(sampled)


def _all_inputs(vocab: Sequence[Token], lengths: range) -> list[tuple[Token, ...]]:
    return [seq for n in lengths for seq in itertools.product(vocab, repeat=n)]


def agreement(program: object, model: Model, inputs: Sequence[Sequence[Token]] | None = None) -> float:
    """Fraction of `inputs` (default: `probe_inputs(model)`) where the program,
    compiled with the model's vocab, max_seq_len, BOS and causality, gives the
    model's outputs. Raises CompileError if tracr cannot compile the program.
    """
    spec = model.spec
    candidate = compile_program(
        program, spec.vocab, spec.max_seq_len, bos=spec.bos, pad=spec.pad, causal=spec.causal
    )
    inputs = probe_inputs(model) if inputs is None else inputs
    if not inputs:
        return 1.0
    if candidate.spec.numerical != spec.numerical:
        return 0.0
    expected = model.run(inputs, mark_undefined=True)
    got = candidate.run(inputs, mark_undefined=True)
    matches = sum(rows_equal(e, g, spec.numerical) for e, g in zip(expected, got))
    return matches / len(inputs)
