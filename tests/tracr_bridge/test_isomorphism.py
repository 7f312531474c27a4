"""The isomorphism certificate: equal weights up to symmetries, and nothing else."""

from __future__ import annotations

import dataclasses

import numpy as np
from tracr.compiler import lib
from tracr.rasp import rasp

from raspsynth.tracr_bridge import compile_program, from_tracr, probe_inputs
from raspsynth.tracr_bridge.isomorphism import weights_isomorphic


def test_stock_tracr_models_permuted_are_isomorphic_to_our_recompilation(lib_references):
    # Independent expectation: tracr's own compiler made the targets.
    for ref in lib_references:
        target = from_tracr(ref.assembled).permuted(5)
        spec = target.spec
        ours = compile_program(ref.program, spec.vocab, spec.max_seq_len, bos=spec.bos, causal=spec.causal)
        result = weights_isomorphic(target, ours, probe_inputs(target)[:256])
        assert result.found, (ref.name, result.reason)


def _reordered(model):
    """Heads of every layer reversed and MLP hidden units reversed: the same
    function, written in another order."""
    layers = []
    for layer in model.layers:
        order = np.arange(layer.mlp_in_w.shape[1])[::-1]
        layers.append(
            dataclasses.replace(
                layer,
                heads=tuple(reversed(layer.heads)),
                mlp_in_w=layer.mlp_in_w[:, order],
                mlp_in_b=layer.mlp_in_b[order],
                mlp_out_w=layer.mlp_out_w[order],
            )
        )
    return dataclasses.replace(model, layers=tuple(layers))


def test_head_and_hidden_unit_order_do_not_matter():
    program = lib.make_sort_unique(rasp.tokens, rasp.tokens)
    model = compile_program(program, {1, 2, 3, 4}, 4)
    reordered = _reordered(model.permuted(2))
    assert reordered.run([[3, 1, 2]]) == model.run([[3, 1, 2]])
    assert weights_isomorphic(reordered, model, probe_inputs(model)).found


def test_a_different_program_or_a_changed_weight_is_not_isomorphic():
    vocab, n = {1, 2, 3}, 4
    model = compile_program(lib.make_hist(), vocab, n)
    # Same shape of circuit as make_hist (a SelectorWidth), another predicate.
    other = compile_program(
        rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ)), vocab, n
    )
    inputs = probe_inputs(model)
    assert model.run(inputs) != other.run(inputs)  # they do differ
    assert not weights_isomorphic(model, other, inputs).found

    layer = model.layers[-1]
    changed_w = np.array(layer.mlp_out_w)
    changed_w[np.unravel_index(np.abs(changed_w).argmax(), changed_w.shape)] *= 1.01
    changed_layer = dataclasses.replace(layer, mlp_out_w=changed_w)
    changed = dataclasses.replace(model, layers=(*model.layers[:-1], changed_layer))
    assert not weights_isomorphic(model, changed, inputs).found


def test_a_rotated_residual_is_not_a_permutation():
    model = compile_program(lib.make_hist(), {1, 2, 3}, 4)
    result = weights_isomorphic(model.rotated(1), model, probe_inputs(model))
    assert not result.found
    # Told by the embeddings' entries, before any permutation is sought.
    assert result.reason == "token embeddings differ (their entries, whatever the permutation)"
    assert weights_isomorphic(model.permuted(1), model, probe_inputs(model)).found
