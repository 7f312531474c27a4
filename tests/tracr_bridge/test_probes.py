"""probe_inputs and agreement."""

from __future__ import annotations

import pytest

from raspsynth.errors import CompileError
from raspsynth.tracr_bridge import agreement, compile_program, load_model, probe_inputs
from raspsynth.tracr_bridge.probes import count_inputs


@pytest.fixture(scope="module")
def hist_model(shared_examples):
    return load_model(str(next(p for p in shared_examples if p.stem == "hist")))


def test_exhaustive_when_small(hist_model):
    probes = probe_inputs(hist_model)
    assert len(probes) == 5 + 25 + 125 + 625 + 3125 == count_inputs(5, 5)
    assert len(set(probes)) == len(probes)


def test_sampled_when_large(hist_model):
    probes = probe_inputs(hist_model, exhaustive_bound=1000, n_random=300, seed=1)
    short = [p for p in probes if len(p) <= 3]
    assert len(short) == 5 + 25 + 125
    longer = probes[len(short) :]
    assert len(longer) == len(set(longer)) == 300
    assert all(4 <= len(p) <= 5 for p in longer)
    assert probe_inputs(hist_model, exhaustive_bound=1000, n_random=300, seed=1) == probes
    assert probe_inputs(hist_model, exhaustive_bound=1000, n_random=300, seed=2) != probes


def test_agreement_of_the_true_program_is_one(hist_model):
    from tracr.compiler import lib

    assert agreement(lib.make_hist(), hist_model) == 1.0


def test_agreement_of_a_wrong_program_is_its_matching_fraction(hist_model):
    from tracr.compiler import lib

    # make_length equals make_hist exactly on inputs whose tokens are all equal.
    inputs = [(1, 1), (2, 2, 2), (0, 1), (3, 4, 3)]
    assert agreement(lib.make_length(), hist_model, inputs) == 0.5
    full = agreement(lib.make_length(), hist_model)
    assert 0 < full < 1


def test_agreement_of_an_uncompilable_program_raises(hist_model):
    from tracr.rasp import rasp

    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    with pytest.raises(CompileError):
        agreement(rasp.Aggregate(sel, rasp.tokens, default=1), hist_model)


def test_numerical_agreement_uses_tolerance(shared_examples):
    from tracr.compiler import lib
    from tracr.rasp import rasp

    model = load_model(str(next(p for p in shared_examples if p.stem == "frac_prevs")))
    program = lib.make_frac_prevs(rasp.numerical(rasp.Map(lambda x: x == 1, rasp.tokens)))
    assert agreement(program, model) == 1.0
    other = lib.make_frac_prevs(rasp.numerical(rasp.Map(lambda x: x == 2, rasp.tokens)))
    assert agreement(other, model) < 0.5
    assert compile_program(program, {0, 1, 2}, 5).spec.numerical
