"""Basis recovery on rotated and mixed residuals, checked against the reading of
the same model axis-aligned (itself checked against tracr's labels) and against
the model's outputs."""

from __future__ import annotations

import numpy as np
import pytest

import raspsynth
from raspsynth.errors import NotTracrStructured
from raspsynth.symbolic.basis import (
    DEPENDENT,
    _categorical_values,
    _echelon,
    _line_per_sop,
    _unit_lines,
    _width_steps,
    lift,
    recover_basis,
)
from raspsynth.symbolic.decompile import decompile_structure
from raspsynth.symbolic.residual_structure import read_structure
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.learned_compression import learn_compression
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.outputs import values_equal
from raspsynth.tracr_bridge.probes import probe_inputs

LIB = lib_programs()
# make_shuffle_dyck is not recovered yet (an MLP reads four blocks after lifting).
RECOVERED = sorted(set(LIB) - {"make_shuffle_dyck"})
# Rotated and mixed keep every dimension; the lossless projection (onto the
# span of the visited states) makes the directions themselves dependent.
KINDS = ["rotated", "mixed", "lossless"]
# Lib programs read under a learned compression (seed 1), at an interference
# near 3e-5. The others are not yet (2e-3 to 6e-3, 40 to 250 times theirs):
# make_hist, make_length and make_sort_unique verify by enumeration only.
LEARNED_READ = ["make_frac_prevs", "make_pair_balance"]


def _compiled(name):
    entry = LIB[name]
    return entry, compile_program(entry.build(), entry.vocab, entry.max_seq_len)


def _change(model, kind: str, seed: int):
    if kind == "lossless":
        return model.compressed("lossless", seed=seed)
    return model.rotated(seed) if kind == "rotated" else model.mixed(seed)


def _shape(structure, sizes: bool = True) -> tuple:
    """What a reading says, whatever the dimensions are called: each block's
    encoding and size, and each component's kind and input blocks' sizes
    (without the sizes, only which blocks are categorical). `one` is left
    out: tracr adds it only where something reads it, a lifted model always."""
    size = {b.name: len(b.dims) if sizes else b.encoding for b in structure.blocks}
    blocks = sorted((b.encoding, size[b.name]) for b in structure.blocks if b.name != "one")
    components = sorted(
        (c.kind, c.layer, tuple(sorted(size.get(i, 0) for i in c.inputs if i))) for c in structure.components
    )
    return blocks, components


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", RECOVERED)
def test_recovered_blocks_match_the_axis_aligned_reading(name, kind):
    """The reading of the permuted model is checked against tracr's own labels
    and wiring in test_residual_structure; the lifted model must read the same."""
    _, model = _compiled(name)
    lifted = recover_basis(_change(model, kind, seed=7))
    if kind == "lossless":
        # A value no visited state holds (a width of 0) has no direction left
        # after the projection: blocks may be smaller, never otherwise different.
        assert lifted.d_model <= model.d_model
        assert _shape(read_structure(lifted), sizes=False) == _shape(read_structure(model.permuted(1)), False)
        return
    assert lifted.d_model == model.d_model  # one dimension per SOp value, as tracr's
    assert _shape(read_structure(lifted)) == _shape(read_structure(model.permuted(1)))


# make_sort_unique's lifted model differs from it where a query selects
# nothing (verification, against the target itself, still passes): see the
# issue 16 note.
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(set(RECOVERED) - {"make_sort_unique"}))
def test_the_lifted_model_keeps_outputs(name, kind):
    _, model = _compiled(name)
    lifted = recover_basis(_change(model, kind, seed=3))
    seqs = probe_inputs(model)
    numerical = model.spec.numerical
    for want, got in zip(model.run(seqs), lifted.run(seqs)):
        assert all(values_equal(a, b, numerical=numerical) for a, b in zip(want, got))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["make_hist", "make_length", "make_frac_prevs", "make_sort_unique"])
def test_synthesis_verifies_in_another_basis(name, kind):
    _, model = _compiled(name)
    res = raspsynth.synthesize(_change(model, kind, seed=5), mode="search", budget_s=30, seed=0)
    assert res.verified and res.certificate == "exhaustive"
    assert res.report["recognised"]  # read from the weights, not enumerated


def test_a_permuted_model_is_read_as_it_is():
    _, model = _compiled("make_hist")
    permuted = model.permuted(2)
    assert decompile_structure(permuted).model is permuted


def test_an_axis_aligned_model_is_not_lifted():
    # Lifting would give the same layout back: when the reader rejects such a
    # model, the basis is not why, and recovery says so at once.
    _, model = _compiled("make_hist")
    with pytest.raises(NotTracrStructured, match="already axis-aligned"):
        recover_basis(model.permuted(2))


def test_categorical_values_split_a_blend_and_reach_past_the_probes():
    # A hand-built discretising MLP over one number x: a start unit writing
    # v0, and two steps, each a pair of units writing +d and -d with
    # ReLU(100 (x - t) + 1) - ReLU(100 (x - t)), at t = 0.5 and t = 0.8.
    # Probes hold x = 0.2 (v0) and x = 0.495 (half way up the first step):
    # the blend is not a value, and the value past the second step, which no
    # probe reached, comes from the thresholds.
    v = np.eye(3)
    rows = np.array([v[0], v[1] - v[0], -(v[1] - v[0]), v[2] - v[1], -(v[2] - v[1])])
    xs = np.array([0.2, 0.495])
    pre = np.stack(
        [np.ones_like(xs), 100 * (xs - 0.5) + 1, 100 * (xs - 0.5), 100 * (xs - 0.8) + 1, 100 * (xs - 0.8)],
        axis=1,
    )
    edges, scale = _unit_lines(rows, tol=1e-9)
    values = _categorical_values(pre, edges, scale, tol=1e-9)
    assert sorted(map(tuple, np.round(values, 9))) == sorted(map(tuple, v))


def test_a_selector_width_near_max_seq_len_is_lifted():
    # At max_seq_len 10 the widths 9 and 10 lie closer than tracr's MLP
    # resolves (1/10 - 1/11 < 2/100): the probes show blends of neighbouring
    # widths, which must not be taken for values.
    from tracr.compiler.lib import make_length

    model = compile_program(make_length(), {0, 1}, 10)
    lifted = recover_basis(model.rotated(4))
    assert _shape(read_structure(lifted)) == _shape(read_structure(model.permuted(1)))
    seqs = probe_inputs(model, exhaustive_bound=3000, n_random=300, seed=0)
    assert model.run(seqs) == lifted.run(seqs)


@pytest.mark.parametrize("kind", ["rotated", "mixed"])
def test_a_numerical_to_categorical_map_is_one_sop(kind):
    # tracr's discretising MLP writes its first value from a unit reading
    # only `one` and each step from a pair of units: independent rows that
    # belong to one SOp (peer_06_01's `not (x > 2)`).
    from tracr.rasp import rasp

    above = rasp.numerical(rasp.Map(lambda x: x > 2, rasp.tokens))
    negated = rasp.categorical(rasp.Map(lambda x: not x, above, simplify=False))
    model = compile_program(negated, {0, 1, 2, 3, 4}, 5)
    lifted = recover_basis(_change(model, kind, seed=2))
    assert _shape(read_structure(lifted)) == _shape(read_structure(model.permuted(1)))
    res = raspsynth.synthesize(_change(model, kind, seed=2), mode="search", budget_s=30, seed=0)
    assert res.verified and res.certificate == "exhaustive"


@pytest.mark.parametrize("kind", ["rotated", "mixed"])
def test_a_linear_sequence_map_of_a_constant_is_one_numerical_sop(kind):
    # A numerical Map that is 0 on every input (the test split's rotated-5:
    # `lt(bool, 0)`) feeds a LinearSequenceMap, whose writes the probes then
    # show at one value besides 0 along one line: one numerical SOp, not two
    # opposite categorical values.
    from tracr.rasp import rasp

    small = rasp.categorical(rasp.Map(lambda x: x <= 1, rasp.tokens))
    zero = rasp.numerical(rasp.Map(lambda x: 1 if x < 0 else 0, small))
    big = rasp.numerical(rasp.Map(lambda x: 1 if x >= 2 else 0, rasp.tokens))
    total = rasp.numerical(rasp.LinearSequenceMap(big, zero, 1, 1))
    out = rasp.numerical(rasp.LinearSequenceMap(zero, total, 1, -1))
    model = compile_program(out, {0, 1, 2, 3}, 5)
    lifted = recover_basis(_change(model, kind, seed=3))
    assert _shape(read_structure(lifted)) == _shape(read_structure(model.permuted(1)))
    res = raspsynth.synthesize(_change(model, kind, seed=3), mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


def _two_widths_in_one_layer():
    # Two SelectorWidths in layer 0 share tracr's BOS cleaner (which then
    # fires twice and leaves -1 of each at BOS), each with its own `start`.
    from tracr.rasp import rasp

    lower = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)))
    before = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.GT)))
    both = rasp.categorical(rasp.SequenceMap(lambda x, y: min(x, y), lower, before))
    return compile_program(both, {0, 1, 2, 3}, 5)


@pytest.mark.parametrize("kind", KINDS)
def test_two_selector_widths_in_one_layer_come_apart(kind):
    model = _two_widths_in_one_layer()
    widths = [c for c in read_structure(model.permuted(1)).components if c.kind == "selector_width"]
    assert len(widths) == 2 and widths[0].layer == widths[1].layer == 0
    lifted = recover_basis(_change(model, kind, seed=6))
    assert _shape(read_structure(lifted), sizes=kind != "lossless") == _shape(
        read_structure(model.permuted(1)), kind != "lossless"
    )
    seqs = probe_inputs(model)
    assert model.run(seqs) == lifted.run(seqs)


@pytest.mark.parametrize("kind", ["rotated", "mixed"])
def test_a_constant_selector_width_is_read(kind):
    # Select FALSE: every width is 0, the number its MLP reads never moves on
    # the probes, so its other widths' values come from the weights.
    from tracr.rasp import rasp

    never = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.FALSE)))
    out = rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, never, rasp.tokens))
    model = compile_program(out, {0, 1, 2}, 4)
    lifted = recover_basis(_change(model, kind, seed=7))
    assert _shape(read_structure(lifted)) == _shape(read_structure(model.permuted(1)))
    res = raspsynth.synthesize(_change(model, kind, seed=7), mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


@pytest.mark.parametrize("kind", ["rotated", "mixed"])
def test_a_map_of_a_blending_width_keeps_its_values(kind):
    # At max_seq_len 10 a SelectorWidth blends neighbouring widths, and so
    # does the MLP reading it: its writes show 0.9 of a value, which makes a
    # one-valued write look like a number unless one row per unit decides.
    from tracr.rasp import rasp

    width = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)))
    small = rasp.categorical(rasp.SequenceMap(lambda x, y: x != y, width, rasp.indices))
    model = compile_program(small, {0, 1}, 10)
    lifted = recover_basis(_change(model, kind, seed=8))
    assert _shape(read_structure(lifted)) == _shape(read_structure(model.permuted(1)))


def test_a_constant_selector_width_beside_another_is_read_after_a_projection():
    # A SelectorWidth of Select FALSE beside one that varies: the projection
    # loses every width but 0 of the constant one, and its MLP's start and
    # first step then write on one line. That is a categorical SOp still (a
    # numerical reading of it left the next MLP reading 3 SOps).
    from tracr.rasp import rasp

    diff = rasp.categorical(rasp.SequenceMap(lambda x, y: abs(x - y), rasp.tokens, rasp.indices))
    shifted = rasp.categorical(rasp.Map(lambda x: x + 2, diff, simplify=False))
    width = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, shifted, rasp.Comparison.LEQ)))
    above = rasp.categorical(rasp.SequenceMap(lambda x, y: x >= y, shifted, width))
    never = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, shifted, rasp.Comparison.FALSE)))
    either = rasp.categorical(rasp.SequenceMap(lambda x, y: bool(x) or bool(y), diff, never))
    out = rasp.categorical(rasp.SelectorWidth(rasp.Select(either, above, rasp.Comparison.LEQ)))
    compressed = compile_program(out, {0, 1, 2, 3, 4}, 5).compressed("lossless", seed=0)
    widths = [b for b in read_structure(recover_basis(compressed)).blocks if ".width" in b.name]
    assert len(widths) == 3 and all(b.encoding == "categorical" for b in widths)
    res = raspsynth.synthesize(compressed, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


def _constant_width_model():
    # Select FALSE: every width is 0. Under the lossless projection the head's
    # output 1/(0+1) is `one` on every state, and no state holds any other width.
    from tracr.rasp import rasp

    never = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.FALSE)))
    out = rasp.categorical(rasp.Map(lambda x: x + 1, never))
    return compile_program(out, {0, 1, 2}, 4)


def test_width_steps_find_tracr_s_slope():
    # The pre-activations tracr's own SelectorWidth MLP computes at a constant
    # head output x: the fit gives back its large number (100), and every
    # unit but the start.
    model = _constant_width_model().permuted(1)
    structure = read_structure(model)
    width = next(c for c in structure.components if c.kind == "selector_width")
    layer, one = model.layers[width.layer], structure.one_dim
    # The start and the step pairs: the units reading `one` (the cleaner reads BOS).
    units = np.array([u for u in width.hidden_units if layer.mlp_in_w[one, u] != 0])
    steps_want = sorted(u for u in units if layer.mlp_in_w[width.attention_dim, u] != 0)
    for x in (1.0, 1 / 3):
        intercepts = x * layer.mlp_in_w[width.attention_dim, units] + layer.mlp_in_w[one, units]
        steps = _width_steps(intercepts, x, model.spec.max_seq_len, 1e-4)
        assert steps is not None
        slope, found = steps
        assert slope == pytest.approx(100.0)
        assert sorted(units[found]) == steps_want
    assert _width_steps(np.array([1.0, 5.0, 9.0]), 1.0, 4, 1e-4) is None


def test_a_constant_selector_width_is_read_after_a_projection():
    # The projection keeps only width 0: its MLP reads `one` alone in the
    # sparsest form until the width's slope is fitted, and writes one value.
    model = _constant_width_model()
    projected = model.compressed("lossless", seed=7)
    structure = read_structure(recover_basis(projected))
    (width,) = [c for c in structure.components if c.kind == "selector_width"]
    assert structure.block(width.name).encoding == "categorical"
    res = raspsynth.synthesize(projected, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]
    seqs = probe_inputs(model)
    assert model.run(seqs) == [[1] * len(s) for s in seqs]  # width 0 everywhere, plus one


def test_interference_is_measured_only_where_reads_carry_it():
    # A change of basis or a projection leaves rounding alone; a learned
    # compression leaves the interference its training stopped at, which
    # the generator measures on its own side (a round trip's error).
    _, model = _compiled("make_hist")
    for kind in KINDS:
        assert lift(_change(model, kind, seed=3)).interference < 1e-6, kind
    learned = learn_compression(model, seed=1)
    assert learned.exact and learned.interference > 1e-4
    assert 1e-5 < lift(learned.model).interference < DEPENDENT


@pytest.mark.parametrize("name", LEARNED_READ)
def test_a_learned_compression_is_read_through_its_interference(name):
    # Reads there carry errors of the interference's size, and relations
    # among directions hold only as well: the lifted model still reads as
    # tracr's own does, and its program verifies against the compressed model.
    _, model = _compiled(name)
    compressed = model.compressed("learned", seed=1)
    lifted = lift(compressed)
    structure = read_structure(lifted.model, lifted.bit_tolerance)
    assert _shape(structure, sizes=False) == _shape(read_structure(model.permuted(1)), False)
    res = raspsynth.synthesize(compressed, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


def _two_sops_of_one_mlp():
    # MLP 0 writes a Map of the indices and a SequenceMap of indices and
    # tokens: both defined wherever there is a token, so under the lossless
    # projection their values sum alike (d(early=F) + d(early=T) = d(less=F)
    # + d(less=T)) and their directions join in one matroid component.
    from tracr.rasp import rasp

    early = rasp.categorical(rasp.Map(lambda x: x >= 2, rasp.indices))
    less = rasp.categorical(rasp.SequenceMap(lambda x, y: x < y, rasp.indices, rasp.tokens))
    both = rasp.categorical(rasp.SequenceMap(lambda x, y: x and y, early, less))
    return compile_program(both, {0, 1, 2, 3}, 4)


def test_two_sops_one_mlp_writes_come_apart_after_a_projection():
    model = _two_sops_of_one_mlp()
    projected = model.compressed("lossless", seed=3)
    lifted = recover_basis(projected)
    # Each value its own direction, written whole; the reads undo the
    # projection's smear along their shared sum, so MLP 1 reads two SOps.
    assert _shape(read_structure(lifted), sizes=False) == _shape(read_structure(model.permuted(1)), False)
    seqs = probe_inputs(model)
    assert model.run(seqs) == lifted.run(seqs)
    res = raspsynth.synthesize(projected, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


def _aggregate_of_unreached_values():
    # The selector never picks the last two indices, so no state holds the
    # copy's values 3 and 4: the projection leaves their directions zero,
    # though the head reads those indices as values.
    from tracr.rasp import rasp

    two_back = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 2)
    earlier = rasp.categorical(rasp.Aggregate(two_back, rasp.indices, default=None))
    upto = rasp.Select(rasp.indices, earlier, rasp.Comparison.LEQ)
    odd = rasp.numerical(rasp.Map(lambda x: x % 2, rasp.tokens))
    return compile_program(rasp.numerical(rasp.Aggregate(upto, odd, default=0)), {0, 1, 2}, 5)


def test_a_copy_of_values_no_state_holds_is_read_after_a_projection():
    model = _aggregate_of_unreached_values()
    projected = model.compressed("lossless", seed=4)
    lifted = recover_basis(projected)
    assert _shape(read_structure(lifted)) == _shape(read_structure(model.permuted(1)))
    seqs = probe_inputs(model)
    numerical = model.spec.numerical
    for want, got in zip(model.run(seqs), lifted.run(seqs)):
        assert all(values_equal(a, b, numerical=numerical) for a, b in zip(want, got))
    res = raspsynth.synthesize(projected, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


def test_a_sequence_map_whose_value_no_state_holds_stays_categorical():
    # `x > y` of a boolean and its copy is never True: under the lossless
    # projection True's direction is gone, and one dimension firing on some
    # input rows would read as a numerical 0/1. tracr compiles no numerical
    # SequenceMap, so it is a categorical SOp with a value no state holds.
    from tracr.rasp import rasp

    big = rasp.categorical(rasp.Map(lambda x: x > 1, rasp.tokens))
    same = rasp.categorical(rasp.Map(lambda x: x, big, simplify=False))
    never = rasp.categorical(rasp.SequenceMap(lambda x, y: x > y, big, same))
    out = rasp.categorical(rasp.SequenceMap(lambda x, y: x or y, never, rasp.indices))
    model = compile_program(out, {0, 1, 2, 3}, 4)
    compressed = model.compressed("lossless", seed=0)
    assert compressed.d_model < model.d_model
    structure = read_structure(recover_basis(compressed))
    assert all(b.encoding == "categorical" for b in structure.blocks if b.name != "one")
    res = raspsynth.synthesize(compressed, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


def test_a_width_no_input_reaches_gives_its_dimension_to_no_width():
    # A Select that is always true never has width 0: under the lossless
    # projection width 0's direction is gone, and the width MLP writes nothing
    # there. That row once named the first dimension "width 0", the width
    # (here 5) that truly fires it kept out, and `length % 4` read wrong.
    from tracr.rasp import rasp

    from raspsynth.symbolic.component_tables import component_tables

    length = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    model = compile_program(rasp.categorical(rasp.Map(lambda x: x % 4, length)), {0, 1, 2}, 5)
    compressed = model.compressed("lossless", seed=0)
    lifted = recover_basis(compressed)
    structure = read_structure(lifted)
    (width,) = [c for c in structure.components if c.kind == "selector_width"]
    assert sorted(component_tables(lifted, structure)[width.name].widths.values()) == [1, 2, 3, 4, 5]
    res = raspsynth.synthesize(compressed, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"] and res.certificate == "exhaustive"


def test_echelon_undoes_an_svd_s_mixing_of_disjoint_dependencies():
    # Two dependencies among five directions, d0 + d1 = d4 and d2 = d3 (as
    # v1 = 2 is v17 = 4 plus v17 = 5 for two Maps of one input), mixed the way
    # an SVD's basis mixes them: the echelon basis reads each apart again.
    first = np.array([1.0, 1.0, 0.0, 0.0, -1.0])
    second = np.array([0.0, 0.0, 1.0, -1.0, 0.0])
    mixed = np.stack([0.6 * first + 0.8 * second, -0.8 * first + 0.6 * second])
    mixed[0, 4] += 1e-4  # a learned compression's interference
    basis = _echelon(mixed, zero=1e-2)
    basis[np.abs(basis) <= 1e-2] = 0.0
    np.testing.assert_allclose(basis, np.stack([first, second]), atol=1e-3)
    assert _echelon(np.zeros((0, 5)), zero=1e-2).shape == (0, 5)


def test_a_line_is_copied_only_for_units_that_fire_together():
    # Units 0 and 1 write line 0 and fire together (two Maps' values a
    # projection put on one line); units 2 and 3 write line 1 one at a time
    # (one Map's value, reached from two inputs).
    edges = np.array([[1.0, 0.0], [0.0, 1.0]])
    scale = np.array([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0], [0.0, 1.0]])
    active = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    lines, copied = _line_per_sop(edges, scale, active)
    np.testing.assert_array_equal(lines, edges[[0, 0, 1]])
    np.testing.assert_array_equal(
        copied, [[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    )
    # Nobody fires together: the lines stay as they are.
    assert _line_per_sop(edges, scale, np.eye(4))[0] is edges
    # Nobody fires at all, only rounding noise (values the probes never
    # reach): that is no firing together either.
    noise = np.full((3, 4), 1e-5)
    assert _line_per_sop(edges, scale, noise)[0] is edges


def test_units_of_values_no_input_reaches_keep_their_line_in_a_rotated_basis():
    # `tokens + copy` where the copy equals the token wherever it is defined:
    # odd sums are never reached, and their units sit at rounding noise. With
    # this rotation the noise once read as units firing together, so values'
    # lines were copied as though two SOps wrote them, and the next MLP's
    # output came out non-one-hot.
    from tracr.rasp import rasp

    first = rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.EQ).named("v0")
    copy = rasp.categorical(rasp.Aggregate(first, rasp.indices, default=None)).named("v1")
    twice = rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, copy)).named("v2")
    apart = rasp.categorical(rasp.SequenceMap(lambda x, y: abs(x - y), rasp.indices, twice)).named("v3")
    odd = rasp.numerical(rasp.Map(lambda x: x % 2 == 1, apart, simplify=False)).named("v4")
    model = compile_program(odd, {0, 1, 2, 3, 4}, 5)
    rotated = model.rotated(11)
    assert _shape(read_structure(recover_basis(rotated))) == _shape(read_structure(model.permuted(1)))
    res = raspsynth.synthesize(rotated, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


@pytest.mark.parametrize("seed", [0, 1])
def test_two_maps_whose_values_hold_together_come_apart_after_a_projection(seed):
    # Token 4 alone gives half = 2 and at_least = 4: under the lossless
    # projection those two values are one line, which both Maps' units write
    # and which holds 2 where they fire together. Once it read as one more
    # SOp, and the head's key as reading three.
    from tracr.rasp import rasp

    half = rasp.categorical(rasp.Map(lambda x: x // 2, rasp.tokens))
    at_least = rasp.categorical(rasp.Map(lambda x: max(x, 2), rasp.tokens))
    width = rasp.SelectorWidth(rasp.Select(at_least, half, rasp.Comparison.EQ))
    model = compile_program(rasp.categorical(rasp.Map(lambda x: x - 3, width)), {0, 1, 2, 3, 4}, 4)
    projected = model.compressed("lossless", seed=seed)
    lifted = recover_basis(projected)
    assert _shape(read_structure(lifted), sizes=False) == _shape(read_structure(model.permuted(1)), False)
    res = raspsynth.synthesize(projected, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


def test_unreached_values_that_never_cover_the_rows_end_the_reading_at_once():
    """A test-split program (eval_neural's lossless set) whose lossless
    compression leaves an MLP's rows uncovered by any guess of unreached
    values: the guessing loop used to run until the deadline (forever with
    none, as in the meta-model's encoder); it stops after one round per unit."""
    import json
    import time

    from raspsynth.neural.block_encoding import encode_blocks
    from raspsynth.program.ir import Program
    from raspsynth.tracr_bridge.rasp_conversion import to_rasp

    program = Program.from_json(json.loads(_UNCOVERED_ROWS_PROGRAM))
    model = compile_program(to_rasp(program), {0, 1, 2, 3, 4}, 5).compressed("lossless", seed=11)
    began = time.monotonic()
    assert encode_blocks(model) is None
    assert time.monotonic() - began < 20
    result = raspsynth.synthesize(model, budget_s=30)
    assert result.verified  # by enumeration: the program is small enough
    assert "no set of value directions covers" in result.report["reason"]


_UNCOVERED_ROWS_PROGRAM = """{"ops": [
 {"kind": "sequence_map", "name": "v0", "inputs": ["indices", "tokens"], "encoding": "categorical",
  "fn": {"fn": "leq2", "params": []}},
 {"kind": "map", "name": "v1", "inputs": ["v0"], "encoding": "numerical", "fn": {"fn": "gt", "params": [3]}},
 {"kind": "select", "name": "v2", "inputs": ["indices", "tokens"], "comparison": "EQ"},
 {"kind": "aggregate", "name": "v3", "inputs": ["v2", "tokens"], "encoding": "categorical"},
 {"kind": "select", "name": "v4", "inputs": ["indices", "v3"], "comparison": "EQ"},
 {"kind": "aggregate", "name": "v5", "inputs": ["v4", "v3"], "encoding": "categorical"},
 {"kind": "map", "name": "v6", "inputs": ["v5"], "encoding": "categorical",
  "fn": {"fn": "lt", "params": [3]}},
 {"kind": "sequence_map", "name": "v7", "inputs": ["v6", "indices"], "encoding": "categorical",
  "fn": {"fn": "add2", "params": []}},
 {"kind": "select", "name": "v15", "inputs": ["v5", "v6"], "comparison": "LT"},
 {"kind": "aggregate", "name": "v16", "inputs": ["v15", "v1"], "encoding": "numerical"},
 {"kind": "select", "name": "v17", "inputs": ["indices", "indices"], "fn": {"fn": "shift", "params": [3]}},
 {"kind": "aggregate", "name": "v18", "inputs": ["v17", "indices"], "encoding": "categorical"},
 {"kind": "select", "name": "v21", "inputs": ["v7", "v18"], "comparison": "LEQ"},
 {"kind": "aggregate", "name": "v22", "inputs": ["v21", "v16"], "encoding": "numerical"}],
 "output": "v22"}"""


def test_an_empty_value_group_has_no_relation():
    """A test-split program (eval_neural's lossless set) where a lossless
    projection leaves an MLP group without values: relating it used to index
    a scalar (IndexError out of the reader and out of `synthesize`); it is no
    relation, and synthesis returns its result within the budget."""
    import json

    from raspsynth.neural.block_encoding import encode_blocks
    from raspsynth.program.ir import Program
    from raspsynth.tracr_bridge.rasp_conversion import to_rasp

    program = Program.from_json(json.loads(_EMPTY_GROUP_PROGRAM))
    model = compile_program(to_rasp(program), {0, 1, 2, 3, 4}, 5).compressed("lossless", seed=11)
    encode_blocks(model)  # raised IndexError
    result = raspsynth.synthesize(model, budget_s=5)
    assert result.report["elapsed_s"] < 8 and result.report["reason"]


_EMPTY_GROUP_PROGRAM = """{"ops": [
 {"kind": "select", "name": "v0", "inputs": ["tokens", "indices"], "comparison": "TRUE"},
 {"kind": "selector_width", "name": "v1", "inputs": ["v0"], "encoding": "categorical"},
 {"kind": "sequence_map", "name": "v2", "inputs": ["v1", "indices"], "encoding": "categorical",
  "fn": {"fn": "leq2", "params": []}},
 {"kind": "sequence_map", "name": "v3", "inputs": ["v2", "tokens"], "encoding": "categorical",
  "fn": {"fn": "and2", "params": []}},
 {"kind": "map", "name": "v5", "inputs": ["v1"], "encoding": "categorical",
  "fn": {"fn": "max", "params": [2]}},
 {"kind": "map", "name": "v6", "inputs": ["v3"], "encoding": "numerical",
  "fn": {"fn": "parity", "params": []}},
 {"kind": "map", "name": "v11", "inputs": ["indices"], "encoding": "numerical",
  "fn": {"fn": "neq", "params": [1]}},
 {"kind": "select", "name": "v14", "inputs": ["v5", "tokens"], "comparison": "LEQ"},
 {"kind": "aggregate", "name": "v15", "inputs": ["v14", "v6"], "encoding": "numerical"},
 {"kind": "linear_sequence_map", "name": "v16", "inputs": ["v15", "v11"], "encoding": "numerical",
  "coefficients": [-1.0, 2.0]}],
 "output": "v16"}"""


@pytest.mark.parametrize("seed", [0, 1])
def test_a_map_whose_values_each_have_a_unit_of_their_own_is_one_sop_after_a_projection(seed):
    # `not indices` fires one unit per value, and under the lossless
    # projection each value's unit lifts to a group, and a writer, of its
    # own. The TRUE Select keying on the Map then read three writers (BOS,
    # True, False), and the fewest-writers shift moved it onto the tokens and
    # indices, which sum alike. The values held one at a time at every
    # position are one SOp: one writer.
    from tracr.rasp import rasp

    first = rasp.categorical(rasp.Map(lambda x: not x, rasp.indices, simplify=False)).named("v0")
    every = rasp.Select(first, rasp.tokens, rasp.Comparison.TRUE).named("v1")
    model = compile_program(rasp.categorical(rasp.SelectorWidth(every)).named("v2"), {0, 1, 2, 3, 4}, 5)
    compressed = model.compressed("lossless", seed=seed)
    structure = read_structure(recover_basis(compressed))
    (head,) = [c for c in structure.components if c.kind == "selector_width"]
    (map_block,) = [b.name for b in structure.blocks if b.writer not in ("embedding",) and len(b.dims) == 2]
    assert map_block in head.inputs
    res = raspsynth.synthesize(compressed, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


@pytest.mark.parametrize("seed", [0, 1])
def test_an_output_value_no_state_holds_is_not_read_by_the_unembed(seed):
    # The copy of `indices != 2` at index 0 or 1 is always True: under the
    # lossless projection False has no direction, the unembed reads only
    # True's, and the output SOp is still the head that writes both.
    from tracr.rasp import rasp

    same = rasp.categorical(rasp.SequenceMap(lambda x, y: x == y, rasp.indices, rasp.tokens)).named("v4")
    either = rasp.categorical(rasp.SequenceMap(lambda x, y: bool(x) or bool(y), same, rasp.indices)).named(
        "v5"
    )
    not_two = rasp.categorical(rasp.Map(lambda x: x != 2, rasp.indices, simplify=False)).named("v0")
    at = rasp.Select(rasp.indices, either, rasp.Comparison.EQ).named("v6")
    model = compile_program(
        rasp.categorical(rasp.Aggregate(at, not_two, default=None)).named("v7"), {0, 1, 2, 3, 4}, 5
    )
    compressed = model.compressed("lossless", seed=seed)
    structure = read_structure(recover_basis(compressed))
    assert structure.block(structure.output).writer.endswith("head0")
    res = raspsynth.synthesize(compressed, mode="search", budget_s=30, seed=0)
    assert res.verified and res.report["recognised"]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_numerical_map_copied_to_the_output_takes_the_output_s_scale_in_a_mixed_basis(seed):
    # A numerical direction's scale is free but for tracr's conventions: the
    # unembed reads the output with weight 1, and a numerical Aggregate
    # copies with weight 1. A mixing changes the norms that set the other
    # scales, so `most`'s table read (0, 1.2) where the output, rescaled
    # alone, expected (0, 1); the copy chain now carries the output's scale.
    from tracr.rasp import rasp

    ones = rasp.numerical(rasp.Map(lambda x: x == 1, rasp.tokens, simplify=False)).named("ones")
    before = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("before")
    share = rasp.numerical(rasp.Aggregate(before, ones, default=0)).named("share")
    most = rasp.numerical(rasp.Map(lambda x: x >= 0.5, share, simplify=False)).named("most")
    model = compile_program(
        rasp.numerical(rasp.Aggregate(before, most, default=0)).named("out"), {0, 1, 2}, 4
    )
    decompiled = decompile_structure(model.mixed(seed))
    assert decompiled.program is not None
    from raspsynth.search.verify import verify

    assert verify(decompiled.program, model).verified


def _read_after_a_projection(program, seed: int) -> None:
    """The lossless-compressed model decompiles, from its weights alone, to a
    program whose outputs equal the axis-aligned model's on every probe."""
    from raspsynth.search.verify import verify

    model = compile_program(program, {0, 1, 2, 3, 4}, 5)
    decompiled = decompile_structure(model.compressed("lossless", seed=seed))
    assert decompiled.program is not None, decompiled.reason
    assert verify(decompiled.program, model).verified


@pytest.mark.parametrize("seed", [0, 1])
def test_a_numerical_map_on_one_line_with_a_categorical_value_is_a_sop_of_its_own(seed):
    # `x == 0` (numerical) and `x - 2` (categorical) of the indices both write
    # at index 0 alone: a projection puts them on one line, which
    # `_line_per_sop` copies. The copies' held values covered no split into
    # one-hot SOps (the numerical one is held alone); now a copy may be the
    # numerical SOp, and the head's value takes the copy it reads whole.
    from tracr.rasp import rasp

    first = rasp.numerical(rasp.Map(lambda x: x == 0, rasp.indices, simplify=False)).named("first")
    less = rasp.categorical(rasp.SequenceMap(lambda x, y: x < y, rasp.tokens, rasp.indices)).named("less")
    shifted = rasp.categorical(rasp.Map(lambda x: x - 2, rasp.indices, simplify=False)).named("shifted")
    select = rasp.Select(less, shifted, rasp.Comparison.GT).named("select")
    _read_after_a_projection(rasp.numerical(rasp.Aggregate(select, first, default=0)).named("out"), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_query_reads_one_sop_when_its_values_lift_apart(seed):
    # `prev` holds no value at index 0 (the Aggregate's default), so neither
    # of `small`'s values is held there. Each value lifted as a group of its
    # own, and the structure reader split them into two numerical 0/1 SOps,
    # the query reading both. A query reads one SOp: that split is wrong.
    from tracr.rasp import rasp

    shift = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1).named("shift")
    prev = rasp.categorical(rasp.Aggregate(shift, rasp.indices, default=None)).named("prev")
    small = rasp.categorical(rasp.Map(lambda x: x <= 1, prev, simplify=False)).named("small")
    select = rasp.Select(rasp.indices, small, rasp.Comparison.EQ).named("select")
    _read_after_a_projection(
        rasp.categorical(rasp.Aggregate(select, rasp.tokens, default=None)).named("out"), seed
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_two_sops_of_one_mlp_split_where_their_input_holds_no_value(seed):
    # `a` and `b` read `prev`, which some positions leave empty: there the
    # MLP writes neither, and the split of its values into SOps must cover
    # the other positions only.
    from tracr.rasp import rasp

    at = rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.EQ).named("at")
    prev = rasp.categorical(rasp.Aggregate(at, rasp.indices, default=None)).named("prev")
    a = rasp.categorical(rasp.SequenceMap(lambda x, y: x != y, prev, rasp.indices)).named("a")
    b = rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, prev, rasp.indices)).named("b")
    width = rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, a, rasp.Comparison.EQ))).named("w")
    select = rasp.Select(width, b, rasp.Comparison.LT).named("select")
    _read_after_a_projection(rasp.categorical(rasp.SelectorWidth(select)).named("out"), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_unit_reading_a_value_two_widths_share_reads_the_width_its_mlp_reads(seed):
    # `equal` and `length` never hold width 0: its two directions, and their
    # codes, are one, and a unit reading `length`'s could read `equal`'s as
    # well. The other units of the MLP read `length`.
    from tracr.rasp import rasp

    equal = rasp.categorical(
        rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))
    ).named("equal")
    length = rasp.categorical(
        rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    ).named("length")
    either = rasp.categorical(rasp.SequenceMap(lambda x, y: bool(x) or bool(y), equal, rasp.tokens)).named(
        "m"
    )
    _read_after_a_projection(
        rasp.categorical(rasp.SequenceMap(lambda x, y: x < y, either, length)).named("out"), seed
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_an_aggregate_of_an_aggregate_copies_unreached_values_nowhere(seed):
    # `at` copies the indices but holds only 0 and 1; `later` copies `at`,
    # and under a projection the copies of `at`'s other values are gone.
    from tracr.rasp import rasp

    big = rasp.categorical(rasp.Map(lambda x: x >= 1, rasp.tokens, simplify=False)).named("big")
    select = rasp.Select(rasp.indices, big, rasp.Comparison.EQ).named("select")
    at = rasp.categorical(rasp.Aggregate(select, rasp.indices, default=None)).named("at")
    back = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k - 3).named("back")
    later = rasp.categorical(rasp.Aggregate(back, at, default=None)).named("later")
    same = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ).named("same")
    _read_after_a_projection(rasp.categorical(rasp.Aggregate(same, later, default=None)).named("out"), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_sequence_map_no_state_holds_but_one_value_of_is_categorical(seed):
    # `b` is True wherever `prev` holds a value, so a projection drops
    # False's direction; its one dimension fires on some input pairs only,
    # beside `a`'s values, which cover them all. A SequenceMap of two
    # categorical SOps is categorical: it is no numerical 0/1 SOp.
    from tracr.rasp import rasp

    at = rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.EQ).named("at")
    prev = rasp.categorical(rasp.Aggregate(at, rasp.indices, default=None)).named("prev")
    a = rasp.categorical(rasp.SequenceMap(lambda x, y: max(x, y), rasp.tokens, prev)).named("a")
    b = rasp.categorical(rasp.SequenceMap(lambda x, y: x == y, prev, rasp.tokens)).named("b")
    _read_after_a_projection(rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, a, b)).named("out"), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_map_with_values_no_state_holds_stays_one_sop_for_a_later_reader(seed):
    # `prev` holds 2, 3 or 4 or nothing, so `a` holds 2 and 3 of its four
    # values and the projection drops the others. Its two dimensions cover
    # some input values only, and read as two numerical 0/1 SOps they cost
    # nothing where `a` is read, until the last MLP reads them beside `c`,
    # which is written later: three SOps, one more than a sub-MLP reads.
    from tracr.rasp import rasp

    big = rasp.categorical(rasp.Map(lambda x: max(x, 2), rasp.tokens, simplify=False)).named("big")
    at = rasp.Select(rasp.indices, big, rasp.Comparison.EQ).named("at")
    prev = rasp.categorical(rasp.Aggregate(at, rasp.indices, default=None)).named("prev")
    a = rasp.categorical(rasp.Map(lambda x: min(x, 3), prev, simplify=False)).named("a")
    b = rasp.categorical(rasp.SequenceMap(lambda x, y: x != y, rasp.tokens, prev)).named("b")
    c = rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, big, b)).named("c")
    _read_after_a_projection(rasp.categorical(rasp.SequenceMap(lambda x, y: x < y, c, a)).named("out"), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_constant_beside_a_sop_where_their_input_holds_no_value_keeps_its_reader(seed):
    # `n` is 3 wherever `p` holds a value, and `r` True or False there: the
    # split of the MLP's values over those positions alone could make `n` a
    # SOp of its own, and then `out`'s units, which read `n` and `r`, read
    # `r`'s two values instead (they sum to what `n` holds), two dimensions
    # of one SOp beside `one`. A one-value SOp is split off only where every
    # position holds some value.
    from tracr.rasp import rasp

    at = rasp.Select(rasp.indices, rasp.tokens, rasp.Comparison.EQ).named("at")
    prev = rasp.categorical(rasp.Aggregate(at, rasp.indices, default=None)).named("prev")
    p = rasp.categorical(rasp.SequenceMap(lambda x, y: x <= y, prev, rasp.indices)).named("p")
    k = rasp.categorical(rasp.Map(lambda x: max(x, 2), p, simplify=False)).named("k")
    n = rasp.categorical(rasp.Map(lambda x: x + 1, k, simplify=False)).named("n")
    q = rasp.categorical(rasp.SequenceMap(lambda x, y: x > y, rasp.tokens, p)).named("q")
    r = rasp.categorical(rasp.Map(lambda x: not x, q, simplify=False)).named("r")
    _read_after_a_projection(
        rasp.categorical(rasp.SequenceMap(lambda x, y: bool(x) and bool(y), n, r)).named("out"), seed
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_a_sequence_map_dimension_is_left_out_of_its_groups_only_as_a_last_resort(seed):
    # `both` holds only the sums its inputs reach together, so its values
    # cover the input pairs only in part: the partial cover is its reading.
    # Leaving single dimensions out as SOps of their own (a SequenceMap no
    # state holds another value of) is for where nothing else covers.
    from tracr.rasp import rasp

    big = rasp.categorical(rasp.Map(lambda x: x > 2, rasp.tokens, simplify=False)).named("big")
    both = rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, big)).named("both")
    _read_after_a_projection(
        rasp.numerical(rasp.Map(lambda x: x >= 3, both, simplify=False)).named("out"), seed
    )
