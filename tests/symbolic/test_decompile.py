"""decompile_structure: programs read off permuted weights verify against the model."""

from __future__ import annotations

import numpy as np
import pytest

from raspsynth.program.ir import Fn
from raspsynth.search import verify
from raspsynth.symbolic.decompile import decompile_structure
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.probes import probe_inputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp
from tests.helpers import random_programs, unreadable
from tests.symbolic.test_residual_structure import _random_model

LIB = lib_programs()


@pytest.mark.parametrize("name", sorted(LIB))
def test_lib_programs_are_recovered_and_verified(name):
    entry = LIB[name]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len).permuted(5)
    decompiled = decompile_structure(model)
    assert decompiled.recognised, decompiled.reason
    assert verify(decompiled.program, model).verified
    assert set(decompiled.confidence) == {op.name for op in decompiled.program.ops}


def test_sampled_programs_are_recovered_and_verified_under_two_permutations():
    failures = []
    for i, sample in enumerate(random_programs(25, seed=99)):
        model = compile_program(to_rasp(sample.program), sample.vocab, sample.max_seq_len)
        for seed in (1, 2):
            permuted = model.permuted(seed)
            decompiled = decompile_structure(permuted)
            if not (decompiled.recognised and verify(decompiled.program, permuted).verified):
                failures.append((i, seed, decompiled.reason))
    assert failures == []


def test_hand_checked_programs_read_back_as_written():
    from tracr.rasp import rasp

    plus_one = rasp.categorical(rasp.Map(lambda x: x + 1, rasp.tokens))
    decompiled = decompile_structure(compile_program(plus_one, {0, 1, 2, 3}, 4).permuted(0))
    (op,) = decompiled.program.ops
    assert (op.kind, op.inputs, op.fn) == ("map", ("tokens",), Fn("add", (1,)))

    entry = LIB["make_hist"]
    decompiled = decompile_structure(
        compile_program(entry.build(), entry.vocab, entry.max_seq_len).permuted(0)
    )
    select, width = decompiled.program.ops
    assert (select.kind, select.inputs, select.comparison) == ("select", ("tokens", "tokens"), "EQ")
    assert (width.kind, width.inputs) == ("selector_width", (select.name,))
    assert decompiled.values.how[decompiled.structure.output] == "read"


def test_not_tracr_structured_weights_give_a_result_not_an_exception():
    random_model = _random_model(np.random.default_rng(3))
    entry = LIB["make_length"]
    turned = unreadable(compile_program(entry.build(), entry.vocab, entry.max_seq_len), seed=2)
    for model in (random_model, turned):
        decompiled = decompile_structure(model)
        assert not decompiled.recognised
        assert decompiled.program is None
        assert decompiled.reason.startswith("not recognisable as tracr-structured")


def test_the_widest_selector_width_is_read_where_tracr_blurs_it():
    """At max_seq_len 10, 1/10 and 1/11 lie closer than tracr's discretising
    MLP resolves, so no exact width reaches the dimension of width 10; it must
    still get that width (this failed on the shifted distribution)."""
    from tracr.rasp import rasp

    everyone = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    width = rasp.categorical(rasp.SelectorWidth(everyone))
    program = rasp.categorical(rasp.Map(lambda w: w % 3, width))
    model = compile_program(program, {0, 1}, 10).permuted(0)
    decompiled = decompile_structure(model)
    assert decompiled.recognised, decompiled.reason
    (widths,) = [t.widths for t in decompiled.tables.values() if getattr(t, "widths", None)]
    assert sorted(widths.values()) == list(range(11))
    assert verify(decompiled.program, model, probe_inputs(model)).verified


def test_a_select_read_from_a_misread_block_gives_a_reason_not_an_exception():
    """Under a projection this program's layer-2 query was misread as a
    numerical block, which holds no value for a predicate to compare: that
    raised a bare KeyError from the predicate tables."""
    from tracr.rasp import rasp

    v0 = rasp.categorical(rasp.Map(lambda x: x != 3, rasp.indices, simplify=False))
    v1 = rasp.categorical(rasp.SequenceMap(lambda x, y: bool(x) or bool(y), rasp.indices, v0))
    v2 = rasp.categorical(rasp.SequenceMap(lambda x, y: x <= y, rasp.tokens, v1))
    v4 = rasp.categorical(rasp.Aggregate(rasp.Select(rasp.indices, v1, rasp.Comparison.EQ), rasp.tokens))
    program = rasp.categorical(rasp.SequenceMap(lambda x, y: x <= y, v2, v4))
    model = compile_program(program, {0, 1, 2, 3, 4}, 5).compressed("lossless", seed=11)
    decompiled = decompile_structure(model)
    if not decompiled.recognised:
        assert decompiled.reason.startswith("not recognisable as tracr-structured")
    else:
        assert verify(decompiled.program, model).verified
