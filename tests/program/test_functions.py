"""Every library function's table matches its lambda source."""

from __future__ import annotations

import itertools

import pytest

from raspsynth.program.functions import COMMUTATIVE, LIBRARY
from raspsynth.program.ir import Fn

DOMAIN = [-3, -1, 0, 1, 2, 3, 4, 6, True, False]


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_table_matches_lambda_source(name):
    entry = LIBRARY[name]
    low, high = entry.param_range
    for params in itertools.product(range(low, high + 1), repeat=len(entry.params)):
        impl = entry.bind(params)
        source = eval(entry.source(params))  # the text written into programs
        for args in itertools.product(DOMAIN, repeat=entry.arity):
            assert impl(*args) == source(*args), (name, params, args)
            if entry.boolean:
                assert isinstance(impl(*args), bool)


def test_commutative_functions_commute():
    for name in COMMUTATIVE:
        f = LIBRARY[name].bind(())
        assert all(f(x, y) == f(y, x) for x, y in itertools.product(DOMAIN, repeat=2)), name


def test_the_library_covers_what_people_write():
    expected = {
        "add",
        "sub",
        "mul",
        "mod",
        "parity",
        "min",
        "max",
        "neg",
        "identity",
        "const",
        "lt",
        "leq",
        "gt",
        "geq",
        "eq",
        "neq",
        "not",
        "and2",
        "or2",
        "add2",
        "sub2",
        "mul2",
    }
    assert expected <= set(LIBRARY)


def test_fn_sources_are_readable():
    assert Fn("add", (2,)).source() == "lambda x: x + 2"
    assert Fn("lt", (3,)).source() == "lambda x: x < 3"
    assert Fn("max2").source() == "lambda x, y: max(x, y)"
    table = Fn.from_table({0: 1, 1: 0}, 1)
    assert eval(table.source())(1) == 0
    assert Fn("add", (2,)).describe() == "add(k=2)"
