"""Verification: does a candidate program compute what the model computes?

In: a program IR and a `Model`. Out: `Verification`. The candidate is
compiled with the model's own spec and both run on the probe inputs (every
input when there are at most 10^5, else every input up to length 3 plus 2000
seeded random ones).

Positions where the candidate's RASP semantics leave the output undefined (a
categorical Aggregate selecting nothing, say) are not compared: there tracr's
output is an argmax over float rounding noise, which two correct
compilations need not share. Everywhere else the outputs must be equal
(numerical ones within `NUMERICAL_ATOL`). `verified` is True only when that
check ran on every probe input and passed on all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from raspsynth.errors import CompileError
from raspsynth.program.evaluate import evaluate
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
    undefined_positions: int  # positions skipped: the candidate leaves them undefined
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
    expected, got = model.run(inputs), compiled.run(inputs)
    semantics = evaluate(program, inputs)
    matched = undefined = 0
    for want_row, got_row, defined_row in zip(expected, got, semantics):
        ok = True
        for want, have, value in zip(want_row, got_row, defined_row):
            if value is None:
                undefined += 1
            elif not _equal(want, have, spec.numerical):
                ok = False
        matched += ok
    return Verification(matched == len(inputs), matched / len(inputs), len(inputs), undefined)


def _equal(want, have, numerical: bool) -> bool:
    if numerical:
        return abs(float(want) - float(have)) <= NUMERICAL_ATOL
    return want == have
