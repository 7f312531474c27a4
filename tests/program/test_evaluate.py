"""The RASP evaluator on hand-checked cases."""

from __future__ import annotations

from raspsynth.program.evaluate import evaluate
from raspsynth.program.ir import Fn, Op, Program


def _mean_of(fn: Fn) -> Program:
    """A numerical Map of tokens, averaged over every position."""
    return Program(
        (
            Op("map", "m", ("tokens",), "numerical", fn=fn),
            Op("select", "s", ("tokens", "tokens"), comparison="TRUE"),
            Op("aggregate", "a", ("s", "m"), "numerical"),
        ),
        "a",
    )


def test_a_numerical_mean_is_the_average_of_numbers_and_undefined_for_anything_else():
    assert evaluate(_mean_of(Fn("identity")), [(1, 2, 3)]) == [[2.0, 2.0, 2.0]]
    # Strings passed through a numerical Map do not average (a decoded sketch
    # may say so): undefined, not a TypeError from deep inside the evaluator.
    assert evaluate(_mean_of(Fn("identity")), [("(", ")")]) == [[None, None]]
