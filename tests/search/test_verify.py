"""verify(): True exactly when the compiled candidate equals the model on
every probe input at every position, undefined (no output value) meeting
undefined."""

from __future__ import annotations

import dataclasses
import importlib

from raspsynth.program.ir import Fn, Op, Program
from raspsynth.search import verify
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.rasp_conversion import to_rasp

# The package exports the function `verify` under the module's own name.
verify_module = importlib.import_module("raspsynth.search.verify")

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


def test_positions_both_leave_undefined_are_counted_not_compared():
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


def test_a_candidate_undefined_where_the_model_is_defined_is_rejected():
    # Hand-checked: indices[j] for the j equal to the token is the token itself
    # whenever the token is a position of the input, and undefined otherwise;
    # the model (identity) is defined everywhere, so the candidate must fail.
    identity = Program((Op("map", "m", ("tokens",), "categorical", Fn("add", (0,))),), "m")
    partial = Program(
        (
            Op("select", "s", ("indices", "tokens"), comparison="EQ"),
            Op("aggregate", "a", ("s", "indices"), "categorical"),
        ),
        "a",
    )
    model = _model(identity)
    result = verify(partial, model)
    assert not result.verified
    # ... and it agrees exactly on the inputs where every token is a position.
    inside = [seq for seq in ([0], [1, 0], [0, 1, 2], [2, 1, 0, 3])]
    assert verify(partial, model, inside).verified
    assert not verify(identity, _model(partial)).verified


def test_a_small_probe_set_always_runs_whole_however_slow_the_machine(monkeypatch):
    # With every probe "too slow" (a loaded machine), the weights are compared
    # only when more than one full chunk of probes remains: a small probe set
    # still runs whole, so its certificate does not depend on the machine.
    monkeypatch.setattr(verify_module, "ALL_PROBES_S", 0.0)
    small = verify(PLUS_ONE, _model(PLUS_ONE).permuted(1))
    assert small.complete and small.isomorphism is None and small.probes == 340
    model = compile_program(to_rasp(PLUS_ONE), {0, 1, 2, 3}, 7).permuted(1)
    large = verify(PLUS_ONE, model)
    assert large.verified and large.isomorphism is not None and large.isomorphism.found
    assert not large.complete and large.probes == verify_module.FIRST_CHUNK
