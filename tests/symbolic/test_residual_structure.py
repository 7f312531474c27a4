"""Blocks, dataflow and component tables read from permuted weights, checked
against the compiler's own graph (labels and wiring tracr assigned)."""

from __future__ import annotations

import numpy as np
import pytest

from raspsynth.errors import NotTracrStructured
from raspsynth.symbolic.compiler_check import compare_with_compiler
from raspsynth.symbolic.component_tables import component_tables
from raspsynth.symbolic.residual_structure import read_structure
from raspsynth.tracr_bridge import HeadWeights, LayerWeights, Model, compile_program
from raspsynth.tracr_bridge.compiler_graph import compiler_graph
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp
from tests.helpers import random_programs

LIB = lib_programs()


def _check(program, vocab, max_seq_len, seed):
    model = compile_program(program, vocab, max_seq_len)
    permutation = np.random.default_rng(seed).permutation(model.d_model)
    permuted = model.permuted(seed)
    structure = read_structure(permuted)
    tables = component_tables(permuted, structure)
    return compare_with_compiler(structure, tables, compiler_graph(program, vocab, max_seq_len), permutation)


@pytest.mark.parametrize("name", sorted(LIB))
def test_lib_program_structure_and_tables_match_the_compiler(name):
    entry = LIB[name]
    check = _check(entry.build(), entry.vocab, entry.max_seq_len, seed=11)
    assert check.block_errors == ()
    assert check.dataflow_errors == ()
    assert check.table_errors == ()
    assert check.unread_operands == 0


def test_sampled_program_structure_and_tables_match_the_compiler():
    failures, unread = [], 0
    for i, sample in enumerate(random_programs(40, seed=4242)):
        check = _check(to_rasp(sample.program), sample.vocab, sample.max_seq_len, seed=i)
        unread += check.unread_operands
        if not check.tables_ok:
            failures.append((i, check.block_errors, check.dataflow_errors, check.table_errors[:2]))
    assert failures == []
    assert unread <= 5  # only constant functions and predicates leave operands unread


def test_two_maps_of_one_input_that_split_it_alike_are_told_apart_by_their_readers():
    # v4 = -v0 and v5 = v0 sit in one MLP layer and partition v0's values
    # identically; only the SequenceMap reading both tells which dim is whose.
    from tracr.rasp import rasp

    v0 = rasp.categorical(rasp.SequenceMap(lambda x, y: x - y, rasp.tokens, rasp.indices))
    v4 = rasp.categorical(rasp.Map(lambda x: -x, v0, simplify=False))
    v5 = rasp.categorical(rasp.Map(lambda x: x, v0, simplify=False))
    program = rasp.categorical(rasp.SequenceMap(lambda x, y: min(x, y), v4, v5))
    check = _check(program, {0, 1, 2, 3, 4}, 5, seed=3)
    assert check.tables_ok, (check.block_errors, check.dataflow_errors, check.table_errors[:2])


def test_selector_width_blocks_and_widths():
    entry = LIB["make_hist"]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len).permuted(4)
    structure = read_structure(model)
    (component,) = structure.components
    assert component.kind == "selector_width"
    assert component.inputs == ("tokens", "tokens")
    assert structure.output == component.name
    widths = component_tables(model, structure)[component.name].widths
    assert sorted(widths.values()) == list(range(entry.max_seq_len + 1))


def _random_model(rng, d_model=20, layers=2) -> Model:
    spec = compile_program(LIB["make_hist"].build(), {0, 1, 2}, 3).spec

    def head():
        return HeadWeights(
            *(
                rng.normal(size=s)
                for s in [(d_model, 4), (4,), (d_model, 4), (4,), (d_model, 4), (4,), (4, d_model)]
            )
        )

    layer_list = [
        LayerWeights(
            (head(),),
            np.zeros(d_model),
            rng.normal(size=(d_model, 8)),
            np.zeros(8),
            rng.normal(size=(8, d_model)),
            np.zeros(d_model),
        )
        for _ in range(layers)
    ]
    return Model(
        rng.normal(size=(len(spec.input_vocab), d_model)),
        rng.normal(size=(spec.max_seq_len + 1, d_model)),
        tuple(layer_list),
        rng.normal(size=(d_model, len(spec.output_values))),
        spec,
    )


def test_weights_not_from_tracr_are_reported_not_crashed_on():
    rng = np.random.default_rng(0)
    with pytest.raises(NotTracrStructured):
        read_structure(_random_model(rng))
    entry = LIB["make_sort_unique"]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len)
    turned = model.rotated(seed=1)
    inputs = [[0, 3, 1], [4, 2, 0, 1]]  # distinct tokens: outputs defined
    assert turned.run(inputs) == model.run(inputs)  # same function, no longer tracr's layout
    with pytest.raises(NotTracrStructured):
        read_structure(turned)
