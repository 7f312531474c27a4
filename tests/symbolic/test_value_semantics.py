"""Joint relabelling by Z3: the "one comparison for every pair" constraint is
the plain formula, built with fewer terms."""

from __future__ import annotations

import itertools

import numpy as np
import z3

from raspsynth.program.ir import PREDICATES
from raspsynth.symbolic.value_semantics import _one_comparison_for_all, _SelectionPattern


def _comparisons_that_can_fit(keys, chosen):
    return _SelectionPattern.of(keys, chosen).comparisons_that_can_fit()


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


def _bounds(formula, named):
    """The constants of `formula` other than `named`: the order chain's class
    bounds, which are existential."""
    found, seen, todo = {}, set(), [formula]
    while todo:
        node = todo.pop()
        if node.get_id() in seen:
            continue
        seen.add(node.get_id())
        if z3.is_const(node) and node.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            if node.get_id() not in {n.get_id() for n in named}:
                found[node.get_id()] = node
        todo.extend(node.children())
    return list(found.values())


def test_the_joint_constraint_equals_the_plain_formula():
    """On random tables over variables and read values, the built constraint
    and the plain one are equivalent (Z3 proves it), satisfiable or not: the
    built one implies the plain one, and the plain one implies that some
    choice of the order chain's class bounds satisfies the built one."""
    rng = np.random.default_rng(0)
    for trial in range(90):
        ctx = z3.Context()
        size = 3 + trial % 3
        queries = [z3.Int(f"q{i}", ctx) for i in range(size)]
        read = trial % 2 == 0  # keys read (constants) or free (variables)
        key_values = [int(v) for v in rng.choice(2 * size, size=size, replace=False)]
        keys = (
            [z3.IntVal(v, ctx) for v in key_values] if read else [z3.Int(f"k{i}", ctx) for i in range(size)]
        )
        if trial % 3 != 1:  # a pattern some comparison makes (its classes of keys are then nested)
            op = list(PREDICATES.values())[trial % len(PREDICATES)]
            labels = rng.choice(2 * size, size=size, replace=False)
            chosen = [[bool(op(key_values[j], int(labels[i]))) for j in range(size)] for i in range(size)]
        else:
            chosen = rng.random((size, size)) < 0.5
        pairs = [
            (queries[i], keys[j], None, key_values[j] if read else None, bool(chosen[i][j]))
            for i in range(size)
            for j in range(size)
        ]
        pairs += pairs[:2]  # a pair met twice
        built, plain = _one_comparison_for_all(pairs, ctx), _plain(pairs, ctx)
        distinct = [z3.Distinct(*queries)] + ([] if read else [z3.Distinct(*keys)])
        bounds = _bounds(built, queries + keys)
        for claim in (
            z3.And(built, z3.Not(plain)),
            z3.And(plain, z3.Not(z3.Exists(bounds, built) if bounds else built)),
        ):
            solver = z3.Solver(ctx=ctx)
            solver.add(*distinct, claim)
            assert solver.check() == z3.unsat, trial


def test_an_order_over_many_keys_is_a_chain_not_every_pair():
    """A sort-like table, 40 queries by 40 keys under LT: the constraint has
    about as many atoms as terms, not their product, and Z3 finds labels
    under which LT selects exactly as the table does."""
    ctx = z3.Context()
    n = 40
    queries = [z3.Int(f"q{i}", ctx) for i in range(n)]
    keys = [z3.Int(f"k{i}", ctx) for i in range(n)]
    rng = np.random.default_rng(1)
    q_labels, k_labels = rng.permutation(n), rng.permutation(n)
    pairs = [
        (queries[i], keys[j], None, None, bool(k_labels[j] < q_labels[i])) for i in range(n) for j in range(n)
    ]
    built = _one_comparison_for_all(pairs, ctx)
    atoms = _count_comparisons(built)
    # Four order comparisons fit; each chain has n - 1 links and two bounds per
    # query. Pair by pair it would be 4 * n * n = 6400 atoms.
    assert 0 < atoms <= 4 * 3 * n
    solver = z3.Solver(ctx=ctx)
    solver.add(built, z3.Distinct(*queries), z3.Distinct(*keys))
    assert solver.check() == z3.sat
    model = solver.model()
    q_found = [model.eval(q).as_long() for q in queries]
    k_found = [model.eval(k).as_long() for k in keys]
    fits = {
        name
        for name, op in PREDICATES.items()
        if all(bool(op(k_found[j], q_found[i])) == chosen for (*_, chosen), (i, j) in zip(pairs, _cells(n)))
    }
    assert fits & {"LT", "LEQ", "GT", "GEQ"}


def _cells(n):
    return [(i, j) for i in range(n) for j in range(n)]


def _count_comparisons(formula) -> int:
    seen, todo, count = set(), [formula], 0
    while todo:
        node = todo.pop()
        if node.get_id() in seen:
            continue
        seen.add(node.get_id())
        if z3.is_le(node) or z3.is_lt(node) or z3.is_ge(node) or z3.is_gt(node):
            count += 1
        todo.extend(node.children())
    return count
