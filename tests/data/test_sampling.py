"""Sampled programs compile, and compiled models follow RASP semantics."""

from __future__ import annotations

import numpy as np
import pytest

from raspsynth.data.sampling import SamplingStats, sample_compiled
from raspsynth.errors import InputError
from raspsynth.program.evaluate import evaluate, trace
from raspsynth.program.ir import OP_KINDS
from raspsynth.program.sampler import SamplerConfig, sample_program
from raspsynth.tracr_bridge import probe_inputs


def test_compile_failure_rate_is_under_five_percent_and_outputs_follow_rasp():
    rng = np.random.default_rng(2024)
    stats = SamplingStats()
    kinds, lengths, numerical = set(), set(), 0
    for _ in range(120):
        compiled = sample_compiled(rng, SamplerConfig(), stats)
        program, model = compiled.sample.program, compiled.model
        kinds |= {op.kind for op in program.ops}
        lengths.add(program.num_sops)
        numerical += model.spec.numerical
        # Independent of the sampler's own check: fresh probe inputs.
        probes = probe_inputs(model)
        picks = [probes[i] for i in rng.choice(len(probes), size=40, replace=False)]
        for got, want in zip(model.run(picks), evaluate(program, picks)):
            for g, w in zip(got, want):
                if w is not None:
                    assert abs(g - w) <= 1e-3 if model.spec.numerical else g == w
    assert stats.compile_failure_rate < 0.05
    assert stats.miscompiles / stats.sampled < 0.1
    assert kinds == set(OP_KINDS)
    assert lengths == set(range(1, 11))
    assert numerical > 5


def test_sampler_is_deterministic_and_configurable():
    a = [sample_program(np.random.default_rng(9)).program for _ in range(3)]
    b = [sample_program(np.random.default_rng(9)).program for _ in range(3)]
    assert a == b
    config = SamplerConfig(min_ops=2, max_ops=3, vocab_size=(8, 10), max_seq_len=(7, 10))
    rng = np.random.default_rng(1)
    for _ in range(20):
        sample = sample_program(rng, config)
        assert 2 <= sample.program.num_sops <= 3
        assert 8 <= len(sample.vocab) <= 10 and 7 <= sample.max_seq_len <= 10


def test_trivial_programs_are_rejected():
    rng = np.random.default_rng(4)
    for _ in range(50):
        sample = sample_program(rng)
        outputs = [v for row in sample.check_outputs for v in row]
        assert len({repr(v) for v in outputs}) > 1
        assert sum(v is None for v in outputs) <= len(outputs) / 2
        assert [list(r) for r in sample.check_outputs] != [list(i) for i in sample.check_inputs]


def test_string_token_programs_compile_and_follow_rasp():
    config = SamplerConfig(vocab_size=(3, 8), max_seq_len=(4, 6), p_string_tokens=1.0)
    rng = np.random.default_rng(5)
    stats = SamplingStats()
    string_ops = set()
    for _ in range(40):
        compiled = sample_compiled(rng, config, stats)
        program, model = compiled.sample.program, compiled.model
        assert all(isinstance(token, str) for token in compiled.sample.vocab)
        assert set(model.spec.vocab) == set(compiled.sample.vocab)
        values = {"tokens": compiled.sample.vocab}
        for op in program.ops:
            if op.kind == "select":
                keys, queries = (values.get(name, {0}) for name in op.inputs)
                # Strings are compared with strings only (Python refuses "a" < 1).
                assert {isinstance(v, str) for v in keys} == {isinstance(v, str) for v in queries}
            reads_strings = any(isinstance(v, str) for name in op.inputs for v in values.get(name, ()))
            if reads_strings:
                string_ops.add((op.kind, op.fn.name if op.fn else op.comparison))
            if op.kind != "select":
                traces = [trace(program, xs)[op.name] for xs in compiled.sample.check_inputs]
                values[op.name] = {v for row in traces for v in row if v is not None}
        probes = probe_inputs(model)
        picks = [probes[i] for i in rng.choice(len(probes), size=min(30, len(probes)), replace=False)]
        for got, want in zip(model.run(picks), evaluate(program, picks)):
            for g, w in zip(got, want):
                if w is not None:
                    assert abs(g - w) <= 1e-3 if model.spec.numerical else g == w
    kinds = {kind for kind, _ in string_ops}
    assert {"map", "sequence_map", "select", "aggregate"} <= kinds
    assert ("map", "table") in string_ops
    assert stats.compile_failure_rate < 0.05


def test_string_tokens_are_off_by_default_and_checked():
    rng = np.random.default_rng(3)
    assert all(all(isinstance(t, int) for t in sample_program(rng).vocab) for _ in range(20))
    with pytest.raises(InputError, match="p_string_tokens"):
        SamplerConfig(p_string_tokens=1.5)
