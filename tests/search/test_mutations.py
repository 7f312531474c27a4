"""`verified` is never True for a wrong program.

Correct programs are perturbed (a comparison, a function, an operand, a
coefficient) and every mutant whose RASP semantics differ from the original's
on some probe input must be rejected by verify() against the original's
model. The expectation comes from the RASP evaluator, not from verify's own
comparison of compiled outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from raspsynth.program.evaluate import evaluate
from raspsynth.program.ir import PREDICATES, SOURCES, Fn, Program, ProgramError
from raspsynth.search import verify
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.outputs import values_equal
from raspsynth.tracr_bridge.probes import probe_inputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp
from tests.helpers import random_programs

OTHER_FUNCTIONS = (Fn("add", (1,)), Fn("neg"), Fn("mod", (2,)), Fn("eq", (1,)))
OTHER_BINARY = (Fn("add2"), Fn("max2"), Fn("lt2"))


def mutants(program: Program) -> Iterator[tuple[str, Program]]:
    for index, op in enumerate(program.ops):
        changes = []
        if op.kind == "select":
            changes += [dict(comparison=c, fn=None) for c in PREDICATES if c != op.comparison]
        if op.kind in ("map", "sequence_map"):
            pool = OTHER_FUNCTIONS if op.kind == "map" else OTHER_BINARY
            changes += [dict(fn=fn) for fn in pool if fn != op.fn]
        if op.kind == "linear_sequence_map":
            a, b = op.coefficients
            changes += [dict(coefficients=(a + 1, b)), dict(coefficients=(a, -b))]
        for slot, current in enumerate(op.inputs):
            if op.kind in ("aggregate", "selector_width") and slot == 0:
                continue
            if program.encoding(current) == "categorical":
                for other in SOURCES:
                    if other != current:
                        inputs = op.inputs[:slot] + (other,) + op.inputs[slot + 1 :]
                        changes.append(dict(inputs=inputs))
        for change in changes:
            ops = list(program.ops)
            ops[index] = dataclasses.replace(op, **change)
            try:
                yield f"{op.name} {change}", Program(tuple(ops), program.output)
            except ProgramError:
                continue


def behaves_differently(a: list, b: list, numerical: bool) -> bool:
    """Some position where both programs are defined and their values differ.

    Positions where one side is undefined are not counted: RASP calls a
    categorical Aggregate over mixed values undefined, but tracr's model
    computes a definite (if meaningless) output there, and two compilations
    may agree on it. Undefined against defined is tested on its own in
    test_verify.py."""
    for row_a, row_b in zip(a, b):
        for x, y in zip(row_a, row_b):
            if x is None or y is None:
                continue
            if not values_equal(x, y, numerical, bool_as_int=True):
                return True
    return False


def _check_mutants(n_programs: int, seed: int) -> int:
    rejected = 0
    for sample in random_programs(n_programs, seed=seed):
        program = sample.program
        model = compile_program(to_rasp(program), sample.vocab, sample.max_seq_len).permuted(3)
        inputs = [xs for xs in probe_inputs(model) if len(xs) <= 4]  # 780 inputs, for speed
        reference = evaluate(program, inputs)
        numerical = program.encoding(program.output) == "numerical"
        assert verify(program, model, inputs).verified  # the original itself passes
        for description, mutant in mutants(program):
            mutated = evaluate(mutant, inputs)
            if behaves_differently(reference, mutated, numerical) and _compiles_faithfully(
                mutant, sample, inputs
            ):
                assert not verify(mutant, model, inputs).verified, (program.dumps(), description)
                rejected += 1
    return rejected


def _compiles_faithfully(program: Program, sample, inputs: list) -> bool:
    """Whether tracr compiles `program` to what its RASP semantics say. Some
    mutants it does not (a negative value of a categorical-to-numerical Map
    comes out as 0): their model may be the original's, and verify can only
    compare models."""
    try:
        compiled = compile_program(to_rasp(program), sample.vocab, sample.max_seq_len)
    except Exception:
        return False
    numerical = program.encoding(program.output) == "numerical"
    return not behaves_differently(evaluate(program, inputs), compiled.run(inputs), numerical)


def test_every_mutant_that_changes_behaviour_is_rejected():
    # Enough mutants really change behaviour for the test to mean something.
    assert _check_mutants(4, seed=1312) >= 20


@pytest.mark.slow
def test_every_mutant_that_changes_behaviour_is_rejected_at_scale():
    assert _check_mutants(40, seed=77) >= 400
