"""synthesize(): verified programs from permuted weights, within budget,
deterministic, invariant under residual permutation, with clear errors."""

from __future__ import annotations

import dataclasses
import importlib
import time

import pytest

from raspsynth import InputError, MetaModelUnavailable, synthesize
from raspsynth.tracr_bridge import compile_program, load_model
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.probes import probe_inputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp
from tests.helpers import FAITHFUL, random_programs

LIB = lib_programs()


def _exec_source(source: str):
    namespace: dict = {}
    exec(source, namespace)  # the contract: exec binds `program` to a tracr SOp
    return namespace["program"]


@pytest.mark.parametrize("name", sorted(LIB))
def test_lib_programs_are_recovered_verified_and_the_same_under_any_permutation(name):
    entry = LIB[name]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len)
    first = synthesize(model.permuted(1), budget_s=60)
    second = synthesize(model.permuted(2), budget_s=60)
    assert first.verified and first.agreement == 1.0
    assert first.source == second.source
    # Independent check: the source, run through tracr's compiler from scratch,
    # reproduces the original (unpermuted) model on every probe input.
    recompiled = compile_program(_exec_source(first.source), entry.vocab, entry.max_seq_len)
    inputs = probe_inputs(model)
    assert _defined(recompiled.run(inputs, mark_undefined=True)) == _defined(
        model.run(inputs, mark_undefined=True)
    )


def _defined(rows):
    return [[round(v, 3) if isinstance(v, float) else v for v in row] for row in rows]


def test_sampled_programs_are_recovered_verified():
    for sample in random_programs(12, seed=2718):
        model = compile_program(to_rasp(sample.program), sample.vocab, sample.max_seq_len).permuted(5)
        result = synthesize(model, budget_s=60, seed=0)
        assert result.verified, (sample.program.dumps(), result.summary())
        assert all(op["from"] in ("symbolic", "search") for op in result.report["ops"])


def test_string_token_programs_are_recovered_verified():
    config = dataclasses.replace(FAITHFUL, p_string_tokens=1.0, vocab_size=(3, 8))
    for sample in random_programs(6, seed=31, config=config):
        assert all(isinstance(token, str) for token in sample.vocab)
        model = compile_program(to_rasp(sample.program), sample.vocab, sample.max_seq_len).permuted(2)
        result = synthesize(model, budget_s=60, seed=0)
        assert result.verified, (sample.program.dumps(), result.summary())


def test_a_tight_budget_returns_in_time_unverified():
    entry = LIB["make_sort_freq"]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len).permuted(3)
    began = time.monotonic()
    result = synthesize(model, budget_s=0.01)
    assert time.monotonic() - began < 2.0  # the budget plus the stage running at the deadline
    assert not result.verified
    assert result.report["verification"].startswith("not run")


def test_results_are_deterministic_for_a_seed():
    entry = LIB["make_shuffle_dyck"]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len).permuted(4)
    a, b = synthesize(model, seed=3), synthesize(model, seed=3)
    assert a.source == b.source and a.verified == b.verified
    assert a.report["ops"] == b.report["ops"]


def test_bad_arguments_get_named_errors(shared_examples, tmp_path, monkeypatch):
    model = load_model(str(shared_examples[0]))
    with pytest.raises(InputError, match="mode must be one of"):
        synthesize(model, mode="magic")
    with pytest.raises(InputError, match="budget_s must be a positive number"):
        synthesize(model, budget_s=0)
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        synthesize(model, seed=1.5)
    with pytest.raises(InputError, match="from_tracr"):
        synthesize(object())
    pipeline = importlib.import_module("raspsynth.search.synthesize")  # the module, not the function
    monkeypatch.setattr(pipeline, "default_checkpoint", lambda: tmp_path / "none.pt")
    with pytest.raises(MetaModelUnavailable, match="no meta-model checkpoint"):
        synthesize(model, mode="neural")
    with pytest.raises(FileNotFoundError):
        synthesize(tmp_path / "absent.npz")


def test_a_path_is_accepted_like_a_model(shared_examples):
    hist = next(p for p in shared_examples if p.stem == "hist")
    result = synthesize(hist)
    assert result.verified
    assert "rasp.SelectorWidth(select_0_0)" in result.source
    assert "rasp.Comparison.EQ" in result.source  # hand-checked: make_hist counts equal tokens


def test_synthesis_runs_under_one_blas_thread_and_gives_the_rest_back(shared_examples):
    # Two syntheses at once on two cores oversubscribe BLAS's threads: each
    # took twice as long (measured on a rotated dev-set model).
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    hist = next(p for p in shared_examples if p.stem == "hist")
    seen: list[set[int]] = []
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        result = synthesize(hist, progress=lambda stage: seen.append(blas_threads()))
        assert blas_threads() == before
    assert result.verified and seen and all(threads == {1} for threads in seen)


def test_a_function_the_library_does_not_name_reads_as_an_expression():
    from tracr.rasp import rasp

    from raspsynth.search.config import SearchConfig

    square_mod = rasp.categorical(rasp.Map(lambda x: x * x % 5, rasp.tokens))
    model = compile_program(square_mod, {0, 1, 2, 3, 4, 5}, 4)
    result = synthesize(model.permuted(3), mode="search", budget_s=30, config=SearchConfig())
    (op,) = result.ir.ops
    assert result.verified and op.fn.name == "table"  # not a library function
    assert result.report["expressions"] == {op.name: "lambda x: x * x % 5"}
    assert "lambda x: x * x % 5" in result.source
    recompiled = compile_program(_exec_source(result.source), {0, 1, 2, 3, 4, 5}, 4)
    inputs = probe_inputs(model)
    assert recompiled.run(inputs) == model.run(inputs)
    tables = synthesize(model.permuted(3), mode="search", budget_s=30, config=SearchConfig(expression_size=0))
    assert tables.report["expressions"] == {} and "lambda x: {0: 0, 1: 1, 2: 4" in tables.source


def test_a_program_tracr_refuses_is_never_the_answer(monkeypatch):
    """A reading whose numerical mean averages values other than 0 and 1
    (hand-built: frac_prevs' 0/1 Map replaced by x + 1) cannot be compiled by
    tracr, so it cannot be the model: the result has no program."""
    import dataclasses

    from raspsynth.program.ir import Fn, Program
    from raspsynth.search.config import SearchConfig

    synthesize_module = importlib.import_module("raspsynth.search.synthesize")

    entry = LIB["make_frac_prevs"]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len).permuted(1)
    real = synthesize_module.decompile_structure

    def refused_reading(model, solver_timeout_ms=None, deadline=None):
        read = real(model, solver_timeout_ms, deadline)
        ops = tuple(
            dataclasses.replace(op, fn=Fn("add", (1,)))
            if op.kind == "map" and op.encoding == "numerical"
            else op
            for op in read.program.ops
        )
        return dataclasses.replace(read, program=Program(ops, read.program.output))

    monkeypatch.setattr(synthesize_module, "decompile_structure", refused_reading)
    config = SearchConfig(repair=False)
    result = synthesize(model, mode="search", budget_s=20, config=config)
    assert not result.verified and result.ir is None and result.source == ""
    assert result.report["verification"].startswith("failed:")
