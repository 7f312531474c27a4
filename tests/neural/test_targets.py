"""Training targets: a program's tokens aligned to its model's reading."""

from __future__ import annotations

from raspsynth.neural.block_encoding import encode_blocks
from raspsynth.neural.program_tokens import from_tokens
from raspsynth.neural.targets import reading_targets
from raspsynth.program.evaluate import evaluate
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.probes import probe_inputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp
from tests.helpers import random_programs


def _defined_equal(ours: list, theirs: list) -> bool:
    """Equal outputs wherever the original program's output is defined."""
    return all(b is None or a == b or abs(float(a) - float(b)) < 1e-6 for a, b in zip(ours, theirs))


def test_aligned_targets_compute_what_the_program_computes_and_follow_the_reading():
    aligned = checked = 0
    for sample in random_programs(20, seed=21):
        model = compile_program(to_rasp(sample.program), sample.vocab, sample.max_seq_len)
        encoded = encode_blocks(model.permuted(3))
        tokens = reading_targets(sample.program, encoded, model)
        if tokens is None:
            continue
        aligned += 1
        decoded = from_tokens(tokens)
        # Op i is the reading's row i + 2: same kinds, in the same order.
        ops = [op for op in decoded.program.ops if op.kind != "select"]
        assert tuple(op.kind for op in ops) == encoded.kinds[2:]
        # The sampler only uses library functions: a hole is where the reading
        # itself needs a table (it labelled an operand's values otherwise).
        reading = [op for op in encoded.decompiled.program.ops if op.kind != "select"]
        for i, op in enumerate(ops):
            if op.name in decoded.holes:
                assert reading[i].fn.name == "table"
        if decoded.holes:
            continue
        checked += 1
        inputs = probe_inputs(model)[:300]
        for ours, theirs in zip(evaluate(decoded.program, inputs), evaluate(sample.program, inputs)):
            assert _defined_equal(ours, theirs)
    assert aligned >= 18 and checked >= 8
