"""Expression search: library functions come back as readable expressions,
anything else as an exact table."""

from __future__ import annotations

import itertools
import random

import pytest

from raspsynth.program.functions import LIBRARY
from raspsynth.symbolic import find_expression

DOMAIN = list(range(5))


def library_tables():
    for name, entry in sorted(LIBRARY.items()):
        low, high = entry.param_range
        for params in itertools.product(range(low, high + 1), repeat=len(entry.params)):
            f = entry.bind(params)
            points = DOMAIN if entry.arity == 1 else list(itertools.product(DOMAIN, DOMAIN))
            table = {p: f(p) if entry.arity == 1 else f(*p) for p in points}
            yield f"{name}{params}", table, entry.arity


def exact(expression, table, arity):
    f = expression.bind()
    for point, want in table.items():
        got = f(point) if arity == 1 else f(*point)
        if got != want or isinstance(got, bool) != isinstance(want, bool):
            return False
    return True


@pytest.mark.parametrize(
    "name,table,arity", list(library_tables()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_library_functions_are_found_as_expressions(name, table, arity):
    found = find_expression(table, arity, time_budget_s=20.0)  # found by size, not speed: no load flakes
    assert found.method in ("expression", "boolean"), (name, found)
    assert exact(found, table, arity), (name, found.source)
    if all(isinstance(v, bool) for v in table.values()):
        assert found.method == "boolean"


def test_readable_forms():
    def found(table, arity):  # a generous budget: found by size, not speed (no load flakes)
        return find_expression(table, arity, time_budget_s=20.0)

    assert found({x: 2 * x + 1 for x in DOMAIN}, 1).source == "lambda x: 2*x + 1"
    assert found({x: 3 - x for x in DOMAIN}, 1).source == "lambda x: 3 - x"
    pairs = {(x, y): abs(x - y) + 1 for x in range(4) for y in range(4)}
    assert found(pairs, 2).source == "lambda x, y: abs(x - y) + 1"
    assert found({x: x % 3 == 1 for x in range(6)}, 1).method == "boolean"


def test_unstructured_tables_fall_back_to_exact_tables_within_budget():
    rng = random.Random(0)
    for arity in (1, 2):
        points = DOMAIN if arity == 1 else list(itertools.product(DOMAIN, DOMAIN))
        table = {p: rng.randint(0, 4) for p in points}
        found = find_expression(table, arity, time_budget_s=0.5)
        assert found.method == "table"
        assert exact(found, table, arity)
    strings = {"a": "b", "b": "a"}
    assert find_expression(strings, 1).method == "table"
    assert exact(find_expression(strings, 1), strings, 1)
