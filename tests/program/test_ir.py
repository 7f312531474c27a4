"""IR validation and JSON round trips."""

from __future__ import annotations

import numpy as np
import pytest

from raspsynth.program.ir import Fn, Op, Program, ProgramError
from raspsynth.program.sampler import sample_program


def small_program() -> Program:
    return Program(
        (
            Op("map", "shifted", ("indices",), fn=Fn("add", (1,))),
            Op("select", "prev", ("indices", "shifted"), comparison="EQ"),
            Op("aggregate", "copied", ("prev", "tokens")),
            Op("sequence_map", "summed", ("copied", "tokens"), fn=Fn.from_table({(0, 0): 0, (1, 1): 2}, 2)),
        ),
        "summed",
    )


def test_json_round_trip_of_hand_and_sampled_programs():
    programs = [small_program()]
    rng = np.random.default_rng(3)
    programs += [sample_program(rng).program for _ in range(50)]
    for program in programs:
        assert Program.loads(program.dumps()) == program


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Program((Op("map", "a", ("b",), fn=Fn("identity")),), "a"), "not defined before"),
        (lambda: Fn("frobnicate"), "unknown library function"),
        (lambda: Fn("add", ()), "parameters"),
        (lambda: Op("select", "s", ("tokens", "tokens"), comparison="ABOUT"), "comparison"),
        (lambda: Op("map", "m", ("tokens",), fn=Fn("add2")), "1-ary fn"),
        (lambda: Op("teleport", "t", ("tokens",)), "unknown op kind"),
        (lambda: Program((Op("select", "s", ("tokens", "tokens"), comparison="EQ"),), "s"), "not an SOp"),
        (lambda: Program((Op("aggregate", "a", ("tokens", "tokens")),), "a"), "wrong type"),
        (lambda: Program.loads('{"ops": [{"kind": "map"}], "output": "x"}'), "malformed"),
    ],
)
def test_malformed_programs_raise_program_error(build, message):
    with pytest.raises(ProgramError, match=message):
        build()
