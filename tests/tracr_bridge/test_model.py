"""Model.run must reproduce tracr's apply; permutations must not change it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from raspsynth.errors import InputError
from raspsynth.tracr_bridge import compile_program, from_tracr, probe_inputs


def stock_outputs(assembled, seqs):
    return [assembled.apply(["BOS", *seq]).decoded[1:] for seq in seqs]


def assert_outputs_equal(ours, theirs, numerical):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if numerical:
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
        else:
            assert a == b


def assert_equal_where_defined(ours, theirs, semantics, numerical, name):
    for a, b, w in zip(ours, theirs, semantics):
        if w is None:
            continue
        if numerical:
            assert abs(a - b) <= 1e-5, name
        else:
            assert a == b, name


def sample_inputs(model, n, seed):
    probes = probe_inputs(model)
    rng = np.random.default_rng(seed)
    # the longest inputs stress attention most; tracr's apply costs ~0.3 s each.
    longest = [p for p in probes if len(p) == model.spec.max_seq_len]
    picks = [longest[i] for i in rng.choice(len(longest), size=min(n - 1, len(longest)), replace=False)]
    return [probes[0], *picks]


def test_outputs_equal_tracr_apply_on_lib_programs(lib_references):
    for ref in lib_references:
        model = from_tracr(ref.assembled)
        seqs = sample_inputs(model, 4, seed=0)
        assert_outputs_equal(model.run(seqs), stock_outputs(ref.assembled, seqs), model.spec.numerical)


def _check_random_against_apply(references):
    """Equal to tracr wherever RASP defines the output; elsewhere (a categorical
    aggregate selecting nothing, say) both argmax over float rounding noise,
    which float32 numpy reproduces from XLA's in most but not all cases."""
    from raspsynth.program.evaluate import evaluate
    from raspsynth.tracr_bridge.rasp_conversion import from_rasp

    for i, ref in enumerate(references):
        model = compile_program(ref.program, ref.vocab, ref.max_seq_len)
        seqs = sample_inputs(model, 2, seed=i)
        semantics = evaluate(from_rasp(ref.program, ref.vocab, ref.max_seq_len), seqs)
        for ours, theirs, want in zip(model.run(seqs), stock_outputs(ref.assembled, seqs), semantics):
            assert_equal_where_defined(ours, theirs, want, model.spec.numerical, ref.name)


def test_outputs_equal_tracr_apply_on_random_programs(random_references):
    # A numerical-output program is among the first 16 (see conftest.random_programs).
    _check_random_against_apply(random_references[:8] + random_references[-8:])


@pytest.mark.slow
def test_outputs_equal_tracr_apply_on_all_random_references(random_references):
    _check_random_against_apply(random_references)


def test_causal_model_equals_tracr_apply():
    from tracr.compiler import compiling, lib

    program = lib.make_frac_prevs(lib.rasp.numerical(lib.rasp.Map(lambda x: x == 1, lib.rasp.tokens)))
    stock = compiling.compile_rasp_to_model(program, {0, 1, 2}, 4, causal=True, compiler_bos="BOS")
    model = compile_program(program, {0, 1, 2}, 4, causal=True)
    seqs = [[1, 0, 1, 1], [0, 1, 2]]
    assert_outputs_equal(model.run(seqs), stock_outputs(stock, seqs), numerical=True)


def test_mixed_lengths_in_one_call_equal_separate_calls(lib_references):
    model = from_tracr(lib_references[2].assembled)  # make_sort_unique
    seqs = [[3, 1, 2], [4], [], [0, 4, 2, 1, 3], [2, 2]]
    assert model.run(seqs) == [model.run([s])[0] for s in seqs]
    assert model.run([[3, 1, 2]]) == [[1, 2, 3]]
    assert model.run([[]]) == [[]]


def test_permuted_models_give_identical_outputs(lib_references, random_references):
    """Exactly identical on tracr's lib programs; on random programs, wherever
    RASP defines the output (elsewhere the argmax is over rounding noise,
    which a different summation order can change)."""
    from raspsynth.program.evaluate import evaluate
    from raspsynth.tracr_bridge.rasp_conversion import from_rasp

    for ref in lib_references + random_references[:20]:
        model = from_tracr(ref.assembled)
        permuted = model.permuted(seed=7)
        assert not np.array_equal(permuted.token_embed, model.token_embed)
        seqs = probe_inputs(model)
        ours, theirs = model.run(seqs), permuted.run(seqs)
        if ref in lib_references:
            if model.spec.numerical:
                assert_outputs_equal(ours, theirs, numerical=True)
            else:
                assert ours == theirs, ref.name
            continue
        semantics = evaluate(from_rasp(ref.program, ref.vocab, ref.max_seq_len), seqs)
        for a, b, w in zip(ours, theirs, semantics):
            assert_equal_where_defined(a, b, w, model.spec.numerical, ref.name)


def test_permutation_is_a_relabelling_of_the_residual(lib_references):
    model = from_tracr(lib_references[0].assembled)
    permuted = model.permuted(seed=3)

    def columns(m):  # one row per residual dimension: its embedding and unembedding weights
        return sorted(map(tuple, np.vstack([m.token_embed, m.pos_embed, m.unembed.T]).T))

    assert columns(permuted) == columns(model)
    assert not np.array_equal(permuted.layers[0].mlp_out_w, model.layers[0].mlp_out_w)


def test_bad_inputs_raise_input_error(lib_references):
    model = from_tracr(lib_references[0].assembled)
    with pytest.raises(InputError, match="not in the model's vocabulary"):
        model.run([[0, 9]])
    with pytest.raises(InputError, match="at most 5"):
        model.run([[0] * 6])
    with pytest.raises(InputError, match="vocabulary"):
        model.run([["BOS", 1]])


def test_make_sort_sorts_every_full_length_input(lib_references):
    model = from_tracr(lib_references[3].assembled)  # make_sort
    seqs = list(itertools.product(sorted(model.spec.vocab), repeat=model.spec.max_seq_len))
    assert model.run(seqs) == [sorted(seq) for seq in seqs]


def test_rotated_models_keep_behaviour_on_lib_programs(lib_references):
    """A rotated residual mixes every dimension (no one-hot column survives)
    but computes the same outputs as tracr's compiled model wherever the
    output is defined (elsewhere the argmax is over rounding noise)."""
    for ref in lib_references:
        model = from_tracr(ref.assembled)
        turned = model.rotated(seed=3)
        assert np.count_nonzero(np.abs(turned.token_embed) > 1e-6) > 2 * np.count_nonzero(model.token_embed)
        seqs = probe_inputs(model)[:200]
        if model.spec.numerical:
            assert_outputs_equal(model.run(seqs), turned.run(seqs), numerical=True)
            continue
        ours, theirs = model.run(seqs, mark_undefined=True), turned.run(seqs)
        pairs = [(a, b) for row, other in zip(ours, theirs) for a, b in zip(row, other) if a is not None]
        assert len(pairs) > 100 and all(a == b for a, b in pairs), ref.name


def test_mixed_and_lossless_compressed_models_keep_outputs(lib_references):
    """A random invertible (not orthogonal) residual map and the projection
    onto the visited states' span give tracr's outputs on every probe input
    (the output rule's comparison; numerical outputs within 1e-3)."""
    from raspsynth.tracr_bridge import rows_equal

    for ref in lib_references:
        model = from_tracr(ref.assembled)
        inputs = probe_inputs(model)
        expected = model.run(inputs, mark_undefined=True)
        mixed = model.mixed(seed=2)
        # Not a rotation: the token embedding's rows change length (tracr's are 0/1 rows).
        assert not np.allclose(
            np.linalg.norm(mixed.token_embed, axis=1), np.linalg.norm(model.token_embed, axis=1)
        )
        compressed = model.compressed("lossless", seed=2)
        # tracr's categorical blocks each sum to `one` in every state: at least
        # one direction per block beyond the first is never visited.
        assert compressed.d_model < model.d_model, ref.name
        for variant in (mixed, compressed):
            got = variant.run(inputs, mark_undefined=True)
            assert all(rows_equal(w, g, model.spec.numerical) for w, g in zip(expected, got)), ref.name


def test_compression_below_the_visited_rank_loses_behaviour(lib_references):
    model = from_tracr(lib_references[3].assembled)  # make_sort
    rank = model.compressed().d_model
    inputs = probe_inputs(model)
    expected = model.run(inputs, mark_undefined=True)
    lossy = model.compressed(dim=rank - 4).run(inputs, mark_undefined=True)
    assert expected != lossy
    with pytest.raises(InputError):
        model.compressed("learned-by-magic")
    with pytest.raises(InputError):
        model.compressed(dim=0)


def test_tokens_keep_their_type_when_encoded():
    """numpy would read [1, "a"] as two strings; encoding must not: 1 is a
    token of a mixed vocabulary, and it is not the string "1"."""
    from raspsynth.tracr_bridge.model import IOSpec, Model

    mixed = IOSpec((1, "a", "BOS", "pad"), "BOS", "pad", 3, ("x", "y"))
    model = Model(np.eye(4, 2, dtype=np.float32), np.zeros((4, 2)), (), np.eye(2), mixed)
    assert [ids.tolist() for ids in model.encode([[1, "a"], ["a"]])] == [[2, 0, 1], [2, 1]]
    with pytest.raises(InputError, match="'1'"):
        model.encode([["1"]])
    strings = IOSpec(("1", "a", "BOS", "pad"), "BOS", "pad", 3, ("x", "y"))
    with pytest.raises(InputError):
        Model(np.eye(4, 2, dtype=np.float32), np.zeros((4, 2)), (), np.eye(2), strings).encode([[1, "a"]])


def test_in_residual_names_each_generator(lib_references):
    model = from_tracr(lib_references[0].assembled)
    assert model.in_residual("plain") is model
    for kind in ("permuted", "rotated", "mixed"):
        np.testing.assert_array_equal(
            model.in_residual(kind, 3).token_embed, getattr(model, kind)(3).token_embed
        )
    lossless = model.in_residual("lossless", 3)
    np.testing.assert_array_equal(lossless.token_embed, model.compressed("lossless", seed=3).token_embed)
    with pytest.raises(InputError, match="residual kind"):
        model.in_residual("sheared")
