"""observed_values(): the model's intermediate values, read from the residual,
equal the original program's RASP trace where labels are fixed by the weights."""

from __future__ import annotations

from raspsynth.program.evaluate import trace
from raspsynth.search.observe import agrees, first_disagreement, observed_values
from raspsynth.symbolic.decompile import decompile_structure
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs


def test_intermediate_values_match_tracrs_own_program():
    entry = lib_programs()["make_sort_unique"]
    program = entry.build()
    model = compile_program(program, entry.vocab, entry.max_seq_len).permuted(6)
    decompiled = decompile_structure(model)
    inputs = [(3, 1, 4), (0, 2), (4, 3, 2, 1, 0)]
    observed = observed_values(model, decompiled, inputs)
    # make_sort_unique: smaller = SelectorWidth(Select(keys, keys, LT)); the
    # output aggregates the token at position `smaller`.
    assert observed["selector_width_0_0"] == [[1, 0, 2], [0, 1], [4, 3, 2, 1, 0]]
    assert observed["aggregate_1_0"] == [[1, 3, 4], [0, 2], [0, 1, 2, 3, 4]]
    assert first_disagreement(decompiled.program, observed, inputs) is None
    assert trace(decompiled.program, inputs[0])["aggregate_1_0"] == [1, 3, 4]


def test_agreement_rules():
    assert agrees(None, None, numerical=False)
    assert not agrees(1, None, numerical=False)  # defined in the model, not in the candidate
    assert agrees(0.0, None, numerical=True)  # tracr turns "no value" into a number
    assert not agrees(None, 1, numerical=False)
    assert agrees(1, True, numerical=False) and agrees(0.5, 0.5004, numerical=True)
