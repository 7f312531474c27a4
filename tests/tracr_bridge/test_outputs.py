"""The output rule: undefined only at the float-noise floor, blends decoded."""

from __future__ import annotations

import numpy as np
import pytest
from tracr.rasp import rasp

from raspsynth.tracr_bridge import compile_program, rows_equal, values_equal
from raspsynth.tracr_bridge.compile import tracr_outputs
from raspsynth.tracr_bridge.model import IOSpec, Model
from raspsynth.tracr_bridge.outputs import NOISE_FLOOR


def embedding_only_model(logits_a, logits_b) -> Model:
    """No layers: token a's output logits are `logits_a`, b's `logits_b`."""
    spec = IOSpec(("a", "b", "BOS", "pad"), "BOS", "pad", 1, ("x", "y"))
    token_embed = np.array([logits_a, logits_b, [0, 0], [0, 0]], dtype=np.float32)
    return Model(token_embed, np.zeros((2, 2)), (), np.eye(2), spec)


def test_a_blend_is_decoded_and_a_differing_blend_is_a_difference():
    # Token a's position is a blend (top logit 0.4: an Aggregate over values)
    # that decodes to x in one model and to y in the other. The old rule
    # (skip where both top logits are below 0.75) called these equal.
    one = embedding_only_model([0.4, 0.3], [1, 0])
    other = embedding_only_model([0.3, 0.4], [1, 0])
    assert one.run([["a"], ["b"]], mark_undefined=True) == [["x"], ["x"]]
    assert other.run([["a"], ["b"]], mark_undefined=True) == [["y"], ["x"]]
    assert not rows_equal(["x"], ["y"], numerical=False)


def test_noise_meets_noise_and_not_a_value():
    noise = embedding_only_model([1e-9, 2e-9], [1, 0])
    other_noise = embedding_only_model([2e-9, 1e-9], [1, 0])
    blend = embedding_only_model([0.4, 0.3], [1, 0])
    assert noise.run([["a"]], mark_undefined=True) == [[None]]
    assert other_noise.run([["a"]], mark_undefined=True) == [[None]]
    assert blend.run([["a"]], mark_undefined=True) == [["x"]]
    assert not rows_equal([None], ["x"], numerical=False)
    # Without marking, the argmax over noise is what tracr would print.
    assert noise.run([["a"]]) == [["y"]]


def test_the_floor_is_relative_to_the_models_logit_scale():
    # Logits of 0.01 are a blend at scale 1, but noise at scale 1e3 (floor 1e3 * NOISE_FLOOR).
    small = embedding_only_model([0.01, 0.0], [1, 0])
    large = embedding_only_model([0.01, 0.0], [1000, 0])
    assert small.logit_scale == pytest.approx(1.0)
    assert large.logit_scale == pytest.approx(1000.0)
    assert NOISE_FLOOR * small.logit_scale < 0.01 < NOISE_FLOOR * large.logit_scale
    assert small.run([["a"]], mark_undefined=True) == [["x"]]
    assert large.run([["a"]], mark_undefined=True) == [[None]]


def _smaller_tokens_mean():
    """At each position, the categorical mean of the strictly smaller tokens:
    nothing selected at the sequence's smallest token (undefined), one value
    or a blend of several elsewhere."""
    select = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)
    return rasp.categorical(rasp.Aggregate(select, rasp.tokens))


@pytest.fixture(scope="module")
def blend_program():
    from tracr.compiler import compiling

    program = _smaller_tokens_mean()
    stock = compiling.compile_rasp_to_model(program, {1, 2, 3}, 3, compiler_bos="BOS")
    return program, stock


def test_blends_and_undefined_positions_against_tracr_apply(blend_program):
    program, stock = blend_program
    model = compile_program(program, {1, 2, 3}, 3)
    seqs = [[1, 2, 3], [3, 1, 2], [2, 2, 1], [3, 3, 3]]
    ours = model.run(seqs, mark_undefined=True)
    # Hand-checked: the smallest token selects nothing (None); 3 in [1, 2, 3]
    # averages 1 and 2, a blend decoded to the first value, 1.
    assert ours == [[None, 1, 1], [1, None, 1], [1, 1, None], [None, None, None]]
    assert ours == tracr_outputs(stock, seqs)


def test_the_rule_holds_in_another_basis_and_at_another_scale(blend_program):
    program, _ = blend_program
    model = compile_program(program, {1, 2, 3}, 3)
    seqs = [[1, 2, 3], [3, 1, 2], [2, 2, 1], [3, 3, 3], [2, 3]]
    expected = model.run(seqs, mark_undefined=True)
    # A rotated residual turns exact zeros into float32 interference, which
    # must not make an undefined position defined or change a decoded value.
    # An exact tie (3 in [3, 1, 2] averages 1 and 2 equally) is the exception:
    # rounding breaks it either way, so it is left out.
    rotated = model.rotated(seed=4).run(seqs, mark_undefined=True)
    floor = NOISE_FLOOR * model.logit_scale
    ties = [
        [bool(np.isclose(*np.sort(row)[-2:])) and row.max() > floor for row in logits]
        for logits in model.logits(seqs)
    ]
    assert ties[1][0], "the hand-checked tie"
    for want, got, tied in zip(expected, rotated, ties):
        assert [w for w, t in zip(want, tied) if not t] == [g for g, t in zip(got, tied) if not t]
    scaled = Model(model.token_embed, model.pos_embed, model.layers, model.unembed * 1000.0, model.spec)
    assert scaled.logit_scale == pytest.approx(1000.0 * model.logit_scale)
    assert scaled.run(seqs, mark_undefined=True) == expected


def test_values_equal_cases():
    assert values_equal(None, None)
    assert not values_equal(None, 0)
    assert not values_equal(True, 1)  # the type is part of a categorical value
    assert values_equal(True, 1, bool_as_int=True)
    assert values_equal(0.5, 0.5004, numerical=True)
    assert not values_equal(0.5, 0.51, numerical=True)
    assert not values_equal("a", 0.5, numerical=True)


def test_numbers_agree_relative_to_their_size():
    # peer_08_13 rotated (float32) outputs 55.980 where the program computes 56;
    # near zero the absolute floor decides: 0.5 and 0.502 differ by more than
    # 1e-3 + 1e-3 * 0.502.
    assert values_equal(56.0, 55.98, numerical=True)
    assert not values_equal(56.0, 55.9, numerical=True)
    assert not values_equal(0.5, 0.502, numerical=True)
    assert rows_equal([56.0, 0.5], [55.98, 0.5009], numerical=True)
