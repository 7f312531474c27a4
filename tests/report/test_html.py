"""The HTML report: one node per op, tables and heatmaps that say what the
program computes, ops placed in the layers tracr compiles them to, and a page
that needs nothing from the network."""

from __future__ import annotations

import re

import pytest

import raspsynth
from raspsynth.program.canonical import value_sets
from raspsynth.report.circuit import op_sublayers
from raspsynth.tracr_bridge.compile import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.rasp_conversion import from_rasp


@pytest.fixture(scope="module")
def sort_unique_result(shared_examples):
    path = next(p for p in shared_examples if p.stem == "sort_unique")
    return raspsynth.synthesize(raspsynth.load_model(str(path)).permuted(seed=2), budget_s=30)


def test_page_has_one_graph_node_per_op_and_a_section_each(sort_unique_result):
    page = sort_unique_result.to_html()
    assert page.startswith("<!DOCTYPE html>")
    ops = [op.name for op in sort_unique_result.ir.ops]
    nodes = re.findall(r'<g id="op-[^"]+" class="op" data-name="([^"]+)"><title>', page)
    assert sorted(nodes) == sorted(ops)
    assert sorted(re.findall(r'<g id="op-[^"]+" class="input" data-name="([^"]+)"', page)) == [
        "indices",
        "tokens",
    ]
    for name in ops:
        assert f'id="sec-op-{name}"' in page
    assert "exhaustive" in page and "verified" in page
    assert "rasp.SelectorWidth" in page  # the source


def test_predicate_heatmap_is_the_comparison_over_query_and_key_values(sort_unique_result):
    # sort_unique's first select is tokens LT tokens over vocab {0..4}: key < query
    # holds for 10 of the 25 (query, key) pairs (hand-checked).
    page = sort_unique_result.to_html()
    first = sort_unique_result.ir.ops[0]
    assert first.kind == "select" and first.comparison == "LT"
    section = page.split(f'id="sec-op-{first.name}"', 1)[1].split("</section>", 1)[0]
    assert section.count('class="on"') == 10 and section.count('class="off"') == 15
    assert 'title="key 0, query 1"' in section


def test_map_table_lists_the_function_on_its_input_values():
    from tracr.compiler import lib
    from tracr.rasp import rasp

    program = rasp.numerical(rasp.Map(lambda x: x * 2 % 5, rasp.tokens)).named("double")
    del lib
    model = compile_program(program, {0, 1, 2, 3, 4}, max_seq_len=3)
    result = raspsynth.synthesize(model, budget_s=30)
    assert result.verified
    page = result.to_html()
    name = result.ir.ops[-1].name
    section = page.split(f'id="sec-op-{name}"', 1)[1].split("</section>", 1)[0]
    cells = re.findall(r"<td>([^<]*)</td>", section.split("<table>", 1)[1])
    assert [float(c) for c in cells] == [0, 2, 4, 1, 3]


def test_ops_sit_in_the_layers_tracr_compiles_them_to(sort_unique_result):
    # sort_unique (hand-checked from tracr's lib): the first select and its width in
    # layer 0 (attention, then the width's MLP), the second select and the aggregate
    # in layer 1's attention.
    program = sort_unique_result.ir
    sub = op_sublayers(program, [0, 1, 2, 3, 4], 5)
    assert [sub[op.name] for op in program.ops] == [0, 1, 2, 2]
    # Every lib program's ops reach exactly the compiled model's last layer.
    for name, entry in sorted(lib_programs().items()):
        model = compile_program(entry.build(), entry.vocab, entry.max_seq_len)
        program = from_rasp(entry.build(), entry.vocab, entry.max_seq_len)
        sub = op_sublayers(program, entry.vocab, entry.max_seq_len)
        assert max(sub.values()) // 2 + 1 == model.num_layers, name
        selects = {op.name for op in program.ops if op.kind == "select"}
        for op in program.ops:  # after everything it reads; a selector is read where it sits
            for i in op.inputs:
                assert sub[i] <= sub[op.name] if i in selects else sub[i] < sub[op.name], (name, op.name)
        assert set(value_sets(program, entry.vocab, entry.max_seq_len)) >= {op.name for op in program.ops}


def test_page_is_self_contained(sort_unique_result):
    page = sort_unique_result.to_html()
    assert "<script" not in page
    external = re.findall(r'(?:src|href)="(?!#)([^"]+)"', page)
    assert external == []
    for loads_something in ("<link", "@import", "url(http", "src="):
        assert loads_something not in page


def test_a_result_with_no_program_still_renders(shared_examples):
    path = next(p for p in shared_examples if p.stem == "hist")
    result = raspsynth.synthesize(
        raspsynth.load_model(str(path)).rotated(seed=0), mode="search", budget_s=0.5
    )
    page = result.to_html()
    assert page.count("<html") == 1
    assert ("not verified" in page) != result.verified
