"""Verification: does a candidate program compute what the model computes?

In: a program IR, a `Model`, probe inputs and an optional deadline. Out:
`Verification`. The candidate is compiled with the model's own spec and both
run on the probe inputs (every input when there are at most 10^5, else every
input up to length 3 plus 2000 seeded random ones; see `probe_inputs`).

Outputs are compared position by position by the rule of
`raspsynth.tracr_bridge.outputs`: a position is undefined only where every
output logit is at float-noise level, undefined meets only undefined, and
everywhere else the decoded outputs (argmax, or numbers within tolerance)
must be equal. Blends are outputs like any other.

Probes run in chunks, in a seeded random order, and the deadline is checked
between chunks: when it passes, the chunks done are a uniform random sample
of the probes, and `complete` is False. `verified` is True only when every
checked probe matched; whether that covers every input is the certificate's
business (`synthesize`).

When the first chunk matches and the rest would take more than
`ALL_PROBES_S`, the recompiled weights are compared with the model's first
(`weights_isomorphic`): equal weights prove equal outputs on every input,
so the remaining probes are skipped (`isomorphism` says so). Probes that
fit in one largest chunk always run: on a loaded machine the first chunk's
time (one-off costs included) would otherwise turn an exhaustive
certificate into an isomorphic one by chance.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from raspsynth.errors import CompileError
from raspsynth.program.ir import Program
from raspsynth.tracr_bridge.compile import compile_program
from raspsynth.tracr_bridge.isomorphism import Isomorphism, weights_isomorphic
from raspsynth.tracr_bridge.model import Model, Token, token_rows
from raspsynth.tracr_bridge.outputs import UNDEFINED, codes_equal, translate_codes
from raspsynth.tracr_bridge.probes import probe_inputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp

# Probes per forward pass between deadline checks: the first chunk small, so
# that a nearly spent budget still checks a sample quickly; later ones as
# many as the time per probe so far says fit before the deadline, up to the
# largest (for speed).
FIRST_CHUNK, SMALLEST_CHUNK, LARGEST_CHUNK = 128, 32, 4096
# Probes expected to take at most this long all run; beyond it, an isomorphism
# of the weights is sought first, which stands for every input at once.
ALL_PROBES_S = 1.0


@dataclasses.dataclass(frozen=True)
class Verification:
    verified: bool
    agreement: float  # fraction of checked probe inputs matched at every position
    probes: int  # probe inputs checked
    undefined_positions: int  # positions where model and candidate both hold no output value
    error: str | None = None  # why the candidate could not be checked at all
    complete: bool = True  # False when the deadline cut the check short (a random sample was checked)
    candidate: Model | None = dataclasses.field(default=None, repr=False, compare=False)
    # The weight comparison, where it was made: `.found` proves every input.
    isomorphism: Isomorphism | None = None


def verify(
    program: Program,
    model: Model,
    inputs: Sequence[Sequence[Token]] | None = None,
    deadline: float | None = None,
    seed: int = 0,
    weights_first: bool = True,
) -> Verification:
    """`program` against `model` on `inputs` (by default its probe inputs);
    `weights_first` False runs every probe even where the weights could
    certify the candidate sooner (benchmarks of the probe check)."""
    spec = model.spec
    inputs = probe_inputs(model) if inputs is None else list(inputs)
    try:
        compiled = compile_program(
            to_rasp(program), spec.vocab, spec.max_seq_len, bos=spec.bos, causal=spec.causal
        )
    except CompileError as err:
        return Verification(False, 0.0, len(inputs), 0, error=str(err))
    if compiled.spec.numerical != spec.numerical:
        return Verification(False, 0.0, len(inputs), 0, error="the candidate's output encoding differs")
    if not inputs:
        return Verification(True, 1.0, 0, 0, candidate=compiled)
    token_map = token_rows(spec, compiled.spec)  # the same tokens, perhaps in another order
    order = np.random.default_rng(seed).permutation(len(inputs))
    matched = undefined = checked = 0
    isomorphism = None
    began, size = time.monotonic(), FIRST_CHUNK
    while checked < len(inputs):
        if checked:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                break
            per_probe = (now - began) / checked
            if (
                weights_first
                and isomorphism is None
                and matched == checked
                and len(inputs) - checked > LARGEST_CHUNK
                and per_probe * (len(inputs) - checked) > ALL_PROBES_S
            ):
                isomorphism = weights_isomorphic(model, compiled, inputs, deadline)
                if isomorphism.found:
                    break
                began, now = began + (time.monotonic() - now), time.monotonic()  # not probe time
            left = LARGEST_CHUNK if deadline is None else (deadline - now) / max(per_probe, 1e-9)
            size = int(min(LARGEST_CHUNK, max(SMALLEST_CHUNK, left)))
        chunk = [inputs[i] for i in order[checked : checked + size]]
        ids, lengths = model.encode_padded(chunk)
        want, _ = model.output_codes_of((ids, lengths), mark_undefined=True)
        have, _ = compiled.output_codes_of((token_map[ids], lengths), mark_undefined=True)
        if not spec.numerical:
            have = translate_codes(have, compiled.spec.output_values, spec.output_values)
            undefined += int(((want == UNDEFINED) & (have == UNDEFINED)).sum())
        matched += int(codes_equal(want, have, spec.numerical).all(axis=1).sum())
        checked += len(chunk)
    return Verification(
        matched == checked,
        matched / checked,
        checked,
        undefined,
        complete=checked == len(inputs),
        candidate=compiled,
        isomorphism=isomorphism,
    )
