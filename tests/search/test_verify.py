"""verify(): True exactly when the compiled candidate equals the model on
every probe input at every position the candidate defines."""

from __future__ import annotations

import dataclasses

from raspsynth.program.ir import Fn, Op, Program
from raspsynth.search import verify
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.rasp_conversion import to_rasp

PLUS_ONE = Program((Op("map", "m", ("tokens",), "categorical", Fn("add", (1,))),), "m")


def _model(program: Program):
    return compile_program(to_rasp(program), {0, 1, 2, 3}, 4)


def test_the_compiled_program_itself_verifies():
    result = verify(PLUS_ONE, _model(PLUS_ONE).permuted(1))
    assert result.verified and result.agreement == 1.0
    assert result.probes == 4 + 16 + 64 + 256 and result.undefined_positions == 0


def test_a_different_function_is_rejected_with_its_agreement():
    plus_two = Program((dataclasses.replace(PLUS_ONE.ops[0], fn=Fn("add", (2,))),), "m")
    result = verify(plus_two, _model(PLUS_ONE))
    assert not result.verified
    assert result.agreement == 0.0  # every input's first token differs


def test_an_uncompilable_or_differently_typed_candidate_is_not_verified():
    numerical = Program((Op("map", "m", ("tokens",), "numerical", Fn("gt", (1,))),), "m")
    result = verify(numerical, _model(PLUS_ONE))
    assert not result.verified and result.error


def test_positions_the_candidate_leaves_undefined_are_skipped_and_counted():
    # Aggregate of tokens at the position holding value 3 of indices: undefined
    # where no index equals the token (the model outputs float noise there).
    program = Program(
        (
            Op("select", "s", ("indices", "tokens"), comparison="EQ"),
            Op("aggregate", "a", ("s", "tokens"), "categorical"),
        ),
        "a",
    )
    result = verify(program, _model(program))
    assert result.verified
    assert result.undefined_positions > 0
