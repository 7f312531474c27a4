"""Canonical forms collapse renamed, reordered and table-equal duplicates."""

from __future__ import annotations

import dataclasses

import numpy as np

from raspsynth.program.canonical import canonical_form, canonical_hash, value_sets
from raspsynth.program.ir import Fn, Op, Program
from raspsynth.program.sampler import sample_program

VOCAB, LEN = frozenset(range(5)), 5


def h(program):
    return canonical_hash(program, VOCAB, LEN)


def rename(program: Program, prefix: str) -> Program:
    names = {op.name: f"{prefix}{i}" for i, op in enumerate(program.ops)}
    ops = tuple(
        dataclasses.replace(op, name=names[op.name], inputs=tuple(names.get(i, i) for i in op.inputs))
        for op in program.ops
    )
    return Program(ops, names[program.output])


def test_renamed_programs_share_a_hash():
    rng = np.random.default_rng(0)
    for _ in range(30):
        program = sample_program(rng).program
        assert h(rename(program, "x")) == h(program)


def test_reordered_independent_ops_share_a_hash():
    a = Op("map", "a", ("tokens",), fn=Fn("add", (1,)))
    b = Op("map", "b", ("indices",), fn=Fn("mul", (2,)))
    c = Op("sequence_map", "c", ("a", "b"), fn=Fn("sub2"))
    assert h(Program((a, b, c), "c")) == h(Program((b, a, c), "c"))


def test_commuted_operands_share_a_hash():
    a = Op("map", "a", ("tokens",), fn=Fn("add", (1,)))
    plus = Program((a, Op("sequence_map", "s", ("a", "indices"), fn=Fn("add2"))), "s")
    swapped = Program((a, Op("sequence_map", "s", ("indices", "a"), fn=Fn("add2"))), "s")
    assert h(plus) == h(swapped)
    # Non-commutative functions still match when the table is transposed with them.
    minus = Program((a, Op("sequence_map", "s", ("a", "indices"), fn=Fn("sub2"))), "s")
    transposed = Program(
        (
            a,
            Op(
                "sequence_map",
                "s",
                ("indices", "a"),
                fn=Fn.from_table({(i, t): t - i for i in range(5) for t in range(1, 6)}, 2),
            ),
        ),
        "s",
    )
    assert h(minus) == h(transposed)
    assert h(minus) != h(Program((a, Op("sequence_map", "s", ("indices", "a"), fn=Fn("sub2"))), "s"))


def test_functions_equal_on_their_domain_are_identified():
    # min(x, 4) is the identity on tokens in {0..4}, and add(1) equals a table.
    ident = Program(
        (Op("map", "m", ("tokens",), fn=Fn("identity")), Op("map", "o", ("m",), fn=Fn("add", (1,)))), "o"
    )
    capped = Program(
        (
            Op("map", "m", ("tokens",), fn=Fn("min", (4,))),
            Op("map", "o", ("m",), fn=Fn.from_table({t: t + 1 for t in range(5)}, 1)),
        ),
        "o",
    )
    assert h(ident) == h(capped)
    assert h(ident) != canonical_hash(capped, frozenset(range(6)), LEN)  # min(5, 4) != 5


def test_dead_code_and_repeated_subexpressions_are_removed():
    core = Program((Op("map", "m", ("tokens",), fn=Fn("add", (2,))),), "m")
    noisy = Program(
        (
            Op("map", "dead", ("indices",), fn=Fn("neg")),
            Op("map", "m", ("tokens",), fn=Fn("add", (2,))),
        ),
        "m",
    )
    assert canonical_form(noisy, VOCAB, LEN).ops == canonical_form(core, VOCAB, LEN).ops
    twice = Program(
        (
            Op("map", "m1", ("tokens",), fn=Fn("add", (2,))),
            Op("map", "m2", ("tokens",), fn=Fn("add", (2,))),
            Op("sequence_map", "s", ("m1", "m2"), fn=Fn("mul2")),
        ),
        "s",
    )
    canonical = canonical_form(twice, VOCAB, LEN)
    assert [op.kind for op in canonical.ops] == ["map", "sequence_map"]
    assert canonical.ops[1].inputs == ("v0", "v0")


def test_different_programs_get_different_hashes():
    rng = np.random.default_rng(5)
    programs = [sample_program(rng).program for _ in range(200)]
    by_hash = {}
    for p in programs:
        by_hash.setdefault(h(p), []).append(p)
    for group in by_hash.values():  # programs sharing a hash are canonically identical
        assert len({canonical_form(p, VOCAB, LEN).dumps() for p in group}) == 1
    assert len(by_hash) > 150


def test_value_sets_follow_tracr_rules():
    program = Program(
        (
            Op("map", "b", ("tokens",), "numerical", fn=Fn("lt", (2,))),
            Op("select", "s", ("indices", "indices"), comparison="LEQ"),
            Op("aggregate", "frac", ("s", "b"), "numerical"),
            Op("selector_width", "w", ("s",)),
        ),
        "w",
    )
    sets = value_sets(program, VOCAB, 3)
    assert sets["b"] == {True, False}
    assert sets["w"] == {0, 1, 2, 3}
    assert sets["frac"] == {v / n for v in (0, 1) for n in (1, 2, 3)}
