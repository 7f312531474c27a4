"""Learned compression (tracr's CompressedTransformer form): it keeps the
outputs of tracr's lib programs on every probe input, its reads are not the
inverses of its writes, and it refuses what it cannot train."""

import numpy as np
import pytest

from raspsynth.errors import CompressionFailed, InputError
from raspsynth.tracr_bridge import from_tracr, rows_equal
from raspsynth.tracr_bridge.learned_compression import learn_compression
from raspsynth.tracr_bridge.probes import probe_inputs


def test_learned_compression_keeps_lib_outputs_with_interference(lib_references):
    for ref in lib_references:
        model = from_tracr(ref.assembled)
        learned = learn_compression(model, seed=1)
        assert learned.exact, (ref.name, learned.agreement)
        compressed = learned.model
        assert compressed.d_model == model.visited_basis().shape[1] < model.d_model, ref.name
        inputs = probe_inputs(model)
        expected = model.run(inputs, mark_undefined=True)
        got = compressed.run(inputs, mark_undefined=True)
        assert all(rows_equal(w, g, model.spec.numerical) for w, g in zip(expected, got)), ref.name
        # Not a projection: a round trip moves visited states (W W^T is not
        # the identity on them), far above float64 rounding (about 1e-15,
        # what a lossless projection leaves); training stops at agreement.
        assert learned.interference > 1e-6, ref.name


def test_learned_compression_is_deterministic_and_starts_broken(lib_references):
    model = from_tracr(lib_references[3].assembled)  # make_sort
    first = learn_compression(model, seed=4)
    again = learn_compression(model, seed=4)
    assert np.array_equal(first.model.token_embed, again.model.token_embed)
    assert first.steps == again.steps
    # 2% noise on the projection already breaks probes; training mends them.
    assert first.start_agreement < 1.0 and first.exact and first.steps > 0


def test_learned_compression_far_below_the_rank_fails_by_name(lib_references):
    model = from_tracr(lib_references[3].assembled)  # make_sort
    learned = learn_compression(model, dim=3, steps=20)
    assert not learned.exact and learned.steps == 20
    with pytest.raises(CompressionFailed, match="probe inputs"):
        model.compressed("learned", dim=3)
    for bad in ({"steps": -1}, {"noise": 1.5}, {"dim": 0}, {"seed": -2}):
        with pytest.raises(InputError):
            learn_compression(model, **bad)
