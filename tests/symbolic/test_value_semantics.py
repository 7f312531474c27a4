"""Joint relabelling by Z3: the "one comparison for every pair" constraint is
the plain formula, built with fewer terms."""

from __future__ import annotations

import itertools

import numpy as np
import z3

from raspsynth.program.ir import PREDICATES
from raspsynth.symbolic.value_semantics import _comparisons_that_can_fit, _one_comparison_for_all


def test_no_comparison_that_some_labelling_fits_is_left_out():
    """Every selection pattern that a comparison makes under some labelling
    (distinct labels on each side) keeps that comparison, checked on every
    labelling of three queries and three keys by 0..4."""
    for name, op in PREDICATES.items():
        for q_labels in itertools.permutations(range(5), 3):
            for k_labels in itertools.permutations(range(5), 3):
                keys = [(q, k) for q in range(3) for k in range(3)]
                chosen = [bool(op(k_labels[k], q_labels[q])) for q, k in keys]
                assert name in _comparisons_that_can_fit(keys, chosen), (name, q_labels, k_labels)


def test_patterns_no_labelling_fits_leave_comparisons_out():
    keys = [(q, k) for q in range(3) for k in range(3)]
    identity = [q == k for q, k in keys]  # equality (a crossing: no order comparison)
    assert _comparisons_that_can_fit(keys, identity) == ["EQ"]
    two_per_row = [k != 2 for q, k in keys]  # every query takes keys 0 and 1
    assert "EQ" not in _comparisons_that_can_fit(keys, two_per_row)
    assert {"LT", "GEQ"} <= set(_comparisons_that_can_fit(keys, two_per_row))


def _plain(pairs, ctx):
    """The constraint as first written: Or over comparisons of And over pairs."""

    def boolean(value):
        return value if isinstance(value, z3.BoolRef) else z3.BoolVal(bool(value), ctx)

    return z3.Or(
        *[
            z3.And(*[boolean(op(k, q)) == chosen for q, k, *_, chosen in pairs], ctx)
            for op in PREDICATES.values()
        ],
        ctx,
    )


def test_the_joint_constraint_equals_the_plain_formula():
    """On random tables over variables and read values, the built constraint
    and the plain one are equivalent (Z3 proves it), satisfiable or not."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        ctx = z3.Context()
        queries = [z3.Int(f"q{i}", ctx) for i in range(3)]
        read = trial % 2 == 0  # keys read (constants) or free (variables)
        key_values = [int(v) for v in rng.choice(6, size=3, replace=False)]
        keys = [z3.IntVal(v, ctx) for v in key_values] if read else [z3.Int(f"k{i}", ctx) for i in range(3)]
        if trial % 3 == 0:  # a pattern some comparison makes
            op = list(PREDICATES.values())[trial % len(PREDICATES)]
            labels = rng.choice(6, size=3, replace=False)
            chosen = [[bool(op(key_values[j], int(labels[i]))) for j in range(3)] for i in range(3)]
        else:
            chosen = rng.random((3, 3)) < 0.5
        pairs = [
            (queries[i], keys[j], None, key_values[j] if read else None, bool(chosen[i][j]))
            for i in range(3)
            for j in range(3)
        ]
        pairs += pairs[:2]  # a pair met twice
        solver = z3.Solver(ctx=ctx)
        solver.add(z3.Distinct(*queries))
        if not read:
            solver.add(z3.Distinct(*keys))
        solver.add(_one_comparison_for_all(pairs, ctx) != _plain(pairs, ctx))
        assert solver.check() == z3.unsat, trial
