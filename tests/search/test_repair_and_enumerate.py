"""repair() brings broken candidates back to the model; enumeration finds
small programs when the weights cannot be read (a rotated residual)."""

from __future__ import annotations

import dataclasses
import time

from raspsynth import synthesize
from raspsynth.program.evaluate import evaluate
from raspsynth.program.ir import Fn, Program
from raspsynth.search.repair import repair, solve_linear_coefficients
from raspsynth.symbolic.decompile import decompile_structure
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.probes import probe_inputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp
from tests.helpers import random_programs, unreadable

LIB = lib_programs()


def _broken(program: Program, op_name: str, **change) -> Program:
    return Program(
        tuple(dataclasses.replace(op, **change) if op.name == op_name else op for op in program.ops),
        program.output,
    )


def _repair_with_observations(model, candidate, decompiled):
    return repair(candidate, model, probe_inputs(model), time.monotonic() + 30, decompiled=decompiled)


def test_a_wrong_comparison_is_repaired_from_intermediate_values():
    entry = LIB["make_sort_unique"]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len).permuted(2)
    decompiled = decompile_structure(model)
    assert decompiled.program.op("select_0_0").comparison == "LT"  # hand-checked: smaller keys counted
    outcome = _repair_with_observations(
        model, _broken(decompiled.program, "select_0_0", comparison="GT"), decompiled
    )
    assert outcome.verification is not None and outcome.verification.verified
    assert outcome.program.op("select_0_0").comparison == "LT"
    assert outcome.edits == ("select_0_0: comparison LT",)


def test_wrong_functions_are_repaired_in_sampled_programs():
    repaired = 0
    for sample in random_programs(10, seed=404):
        model = compile_program(to_rasp(sample.program), sample.vocab, sample.max_seq_len).permuted(1)
        decompiled = decompile_structure(model)
        target = next((op for op in decompiled.program.ops if op.kind == "map"), None)
        if target is None:
            continue
        wrong = Fn("const", (2,)) if target.fn != Fn("const", (2,)) else Fn("neg")
        outcome = _repair_with_observations(
            model, _broken(decompiled.program, target.name, fn=wrong), decompiled
        )
        assert outcome.verification is not None and outcome.verification.verified, sample.program.dumps()
        # Independent of verify(): the repaired program's RASP semantics equal
        # the original program's wherever the original is defined.
        inputs = probe_inputs(model)[:400]
        for want, got in zip(evaluate(sample.program, inputs), evaluate(outcome.program, inputs)):
            assert all(w is None or _close(w, g) for w, g in zip(want, got))
        repaired += 1
    assert repaired >= 5


def _close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) < 1e-6
    return a == b


def test_linear_coefficients_are_solved_as_integers():
    rows = {(x, y): 2 * x - 3 * y for x in range(3) for y in range(3)}
    assert solve_linear_coefficients(rows) == (2, -3)
    assert solve_linear_coefficients({(1, 0): 0.5, (0, 1): 0.0}) is None  # no integer fits


def test_rotated_weights_fall_back_to_enumeration():
    for name, comparison in (("make_length", "TRUE"), ("make_hist", "EQ")):
        entry = LIB[name]
        model = unreadable(compile_program(entry.build(), entry.vocab, entry.max_seq_len), seed=1)
        result = synthesize(model, budget_s=60)
        assert result.verified
        assert result.report["recognised"] is False
        # Hand-checked: both are SelectorWidth of a token-token Select.
        assert [op.kind for op in result.ir.ops] == ["select", "selector_width"]
        assert result.ir.ops[0].comparison == comparison
        assert all(op["from"] == "search" for op in result.report["ops"])


def test_unreadable_weights_without_a_small_program_end_unverified_in_budget():
    entry = LIB["make_sort_freq"]  # needs more ops than enumeration reaches in 3 s
    model = unreadable(compile_program(entry.build(), entry.vocab, entry.max_seq_len), seed=2)
    began = time.monotonic()
    result = synthesize(model, mode="search", budget_s=3)
    assert time.monotonic() - began < 6
    assert not result.verified and result.program is None and result.source == ""
    assert "enumeration found none" in result.report["verification"]
    # The meta-model reads the symbolic layer's blocks, and there are none:
    # hybrid gives enumeration the whole budget, as search does.
    result = synthesize(model, mode="hybrid", budget_s=3)
    assert not result.verified and result.report["recognised"] is False
    assert result.report["meta_model"].endswith("(not needed)")
    assert "enumeration found none (budget spent)" in result.report["verification"]
