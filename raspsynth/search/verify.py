"""Verification: does a candidate program compute what the model computes?

In: a program IR and a `Model`. Out: `Verification`. The candidate is
compiled with the model's own spec and both run on the probe inputs (every
input when there are at most 10^5, else every input up to length 3 plus 2000
seeded random ones).

Outputs are compared position by position, numerical ones within
`NUMERICAL_ATOL`. A categorical position whose output block holds no value
(an Aggregate that selected nothing, say) reads as undefined on either side
(`Model.run(mark_undefined=True)`): there tracr's argmax picks among float
rounding noise, which two correct compilations need not share. Undefined
must then meet undefined: a candidate undefined where the model is defined,
or the reverse, disagrees. `verified` is True only when that check ran on
every probe input and passed on all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from raspsynth.errors import CompileError
from raspsynth.program.ir import Program
from raspsynth.tracr_bridge.compile import compile_program
from raspsynth.tracr_bridge.model import Model, Token
from raspsynth.tracr_bridge.probes import NUMERICAL_ATOL, probe_inputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp


@dataclasses.dataclass(frozen=True)
class Verification:
    verified: bool
    agreement: float  # fraction of probe inputs matched at every defined position
    probes: int
    undefined_positions: int  # positions where model and candidate both hold no output value
    error: str | None = None  # why the candidate could not be checked at all


def verify(program: Program, model: Model, inputs: Sequence[Sequence[Token]] | None = None) -> Verification:
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
        return Verification(True, 1.0, 0, 0)
    expected = model.run(inputs, mark_undefined=True)
    got = compiled.run(inputs, mark_undefined=True)
    matched = undefined = 0
    for want_row, got_row in zip(expected, got):
        undefined += sum(want is None and have is None for want, have in zip(want_row, got_row))
        matched += all(_equal(want, have, spec.numerical) for want, have in zip(want_row, got_row))
    return Verification(matched == len(inputs), matched / len(inputs), len(inputs), undefined)


def _equal(want, have, numerical: bool) -> bool:
    if want is None or have is None:
        return want is have
    if numerical:
        return abs(float(want) - float(have)) <= NUMERICAL_ATOL
    return want == have
