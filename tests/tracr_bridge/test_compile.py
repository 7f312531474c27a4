"""compile_program must equal tracr's stock compiler array for array."""

from __future__ import annotations

import numpy as np
import pytest

from raspsynth.errors import CompileError
from raspsynth.tracr_bridge import compile_program, from_tracr


def assert_same_model(ours, theirs):
    assert ours.meta() == theirs.meta()
    a, b = ours.arrays(), theirs.arrays()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float32, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_lib_programs_equal_stock_tracr(lib_references):
    assert {r.name for r in lib_references} == {
        "make_length",
        "make_hist",
        "make_sort_unique",
        "make_sort",
        "make_sort_freq",
        "make_frac_prevs",
        "make_pair_balance",
        "make_shuffle_dyck",
    }
    for ref in lib_references:
        ours = compile_program(ref.program, ref.vocab, ref.max_seq_len)
        assert_same_model(ours, from_tracr(ref.assembled))


def test_random_programs_equal_stock_tracr(random_references):
    assert len(random_references) >= 50
    numerical = 0
    for ref in random_references:
        ours = compile_program(ref.program, ref.vocab, ref.max_seq_len)
        assert_same_model(ours, from_tracr(ref.assembled))
        numerical += ours.spec.numerical
    assert numerical >= 10


def test_causal_flag_matches_stock_tracr(lib_references):
    from tracr.compiler import compiling

    ref = lib_references[0]
    stock = compiling.compile_rasp_to_model(
        ref.program, ref.vocab, ref.max_seq_len, causal=True, compiler_bos="BOS"
    )
    assert_same_model(
        compile_program(ref.program, ref.vocab, ref.max_seq_len, causal=True), from_tracr(stock)
    )


def _refused_programs():
    from tracr.rasp import rasp

    numerical_keys = rasp.numerical(rasp.Map(lambda x: x, rasp.tokens))
    numerical_select = rasp.Select(numerical_keys, rasp.tokens, rasp.Comparison.EQ)
    yield "numerical select keys", rasp.Aggregate(numerical_select, rasp.tokens), "keys must be categorical"
    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    yield "categorical default", rasp.Aggregate(sel, rasp.tokens, default=1), "default"
    yield (
        "numerical seqmap",
        rasp.numerical(rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, rasp.indices)),
        "SequenceMap",
    )
    yield (
        "averaging non-binary",
        rasp.numerical(
            rasp.Aggregate(sel, rasp.numerical(rasp.Map(lambda x: x + 5, rasp.tokens)), default=0)
        ),
        "binary",
    )


@pytest.mark.parametrize("case", list(_refused_programs()), ids=lambda c: c[0])
def test_refused_programs_raise_compile_error_with_reason(case):
    _, program, reason = case
    with pytest.raises(CompileError, match=reason):
        compile_program(program, {0, 1, 2}, 4)


def test_bad_arguments_raise_compile_error():
    from tracr.rasp import rasp

    with pytest.raises(CompileError, match="BOS"):
        compile_program(rasp.Map(lambda x: x, rasp.tokens), {"BOS", 1}, 3)
    with pytest.raises(CompileError, match="rasp.SOp"):
        compile_program("not a program", {1}, 3)
    with pytest.raises(CompileError, match="max_seq_len"):
        compile_program(rasp.Map(lambda x: x, rasp.tokens), {1}, 0)


def test_a_categorical_output_no_input_reaches_is_a_compile_error():
    """tracr builds a model whose output space is empty (a table keyed by
    values its input never takes); no model file holds that, so it is a
    CompileError, which `verify` reports as a failed candidate."""
    from raspsynth.program.ir import Fn, Op, Program
    from raspsynth.search.verify import verify
    from raspsynth.tracr_bridge.rasp_conversion import to_rasp

    program = Program((Op("map", "m", ("tokens",), "categorical", fn=Fn.from_table({7: 1}, 1)),), "m")
    with pytest.raises(CompileError, match="values"):
        compile_program(to_rasp(program), {0, 1, 2}, 4)
    target = compile_program(
        to_rasp(Program((Op("map", "m", ("tokens",), fn=Fn("identity")),), "m")), {0, 1, 2}, 4
    )
    result = verify(program, target)
    assert not result.verified and "values" in result.error
