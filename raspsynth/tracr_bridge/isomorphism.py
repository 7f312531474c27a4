"""Are two models' weights the same up to the symmetries that keep behaviour?

In: a target `Model` and a candidate `Model` (the candidate program recompiled
with the target's spec), and some inputs of theirs. Out: `Isomorphism`: found
or not, and why not.

Found means the candidate's weights equal the target's, within float
tolerance, after
- a permutation of the residual dimensions,
- a reordering of the heads within each attention sublayer and of the hidden
  units within each MLP,
- dropping sublayers, heads and hidden units that write nothing (tracr pads
  layers to a common shape with zeros),
- matching token rows and output columns by their values (tracr sorts them).
Then the two compute the same function on every input (up to float
rounding), at a cost independent of the input space: the certificate
"isomorphic", a proof on all inputs where running them all is impossible.

Heads are compared by their circuits, QK = [W_Q; b_Q][W_K; b_K]^T / sqrt(K)
and OV = [W_V; b_V] W_O, which fix a head's output whatever its key size.
The residual permutation is found from signatures invariant under all the
symmetries: each dimension's values in the final residual stream on the
inputs, its embedding column, its unembed row, and the sorted entries of its
rows and columns in every head's circuits and every MLP. The permutation is
only a proposal; the weight comparison under it is the proof.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from raspsynth.errors import BudgetSpent, check_deadline
from raspsynth.tracr_bridge.model import LayerWeights, Model, Token, token_rows
from raspsynth.tracr_bridge.outputs import value_key

RTOL = 1e-5  # relative to each compared matrix's largest entry
SIGNATURE_DECIMALS = 4
SIGNATURE_INPUTS = 256


@dataclasses.dataclass(frozen=True)
class Isomorphism:
    found: bool
    reason: str  # why not, or what was matched


@dataclasses.dataclass(frozen=True)
class _Sublayer:
    """A sublayer that writes something: 'attn' with head circuits, or 'mlp'
    with hidden units as rows [in_w column, in_b, out_w row]."""

    kind: str
    heads: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (QK [D+1, D+1], OV [D+1, D])
    units: np.ndarray | None = None  # [hidden, D + 1 + D]
    bias: np.ndarray | None = None  # [D], added whatever the input


def weights_isomorphic(
    target: Model, candidate: Model, inputs: Sequence[Sequence[Token]], deadline: float | None = None
) -> Isomorphism:
    """Whether `candidate` equals `target` up to the symmetries above; not
    found (reason: the budget) when `deadline` (time.monotonic()) passes."""
    t_spec, c_spec = target.spec, candidate.spec
    if set(map(value_key, t_spec.vocab)) != set(map(value_key, c_spec.vocab)) or (
        t_spec.max_seq_len,
        t_spec.causal,
        t_spec.numerical,
    ) != (c_spec.max_seq_len, c_spec.causal, c_spec.numerical):
        return Isomorphism(False, "the specs differ")
    if target.d_model != candidate.d_model:
        return Isomorphism(False, f"residual widths differ ({target.d_model} vs {candidate.d_model})")
    rows = token_rows(target.spec, candidate.spec)
    if rows is None:
        return Isomorphism(False, "the input vocabularies differ")
    columns = _output_columns(target, candidate)
    if columns is None:
        return Isomorphism(False, "the output values differ")
    t_layers, c_layers = _sublayers(target), _sublayers(candidate)
    shape = [(s.kind, len(s.heads), 0 if s.units is None else len(s.units)) for s in t_layers]
    if shape != [(s.kind, len(s.heads), 0 if s.units is None else len(s.units)) for s in c_layers]:
        return Isomorphism(False, "the sublayers, heads or hidden units differ in number")

    try:
        return _compared(target, candidate, t_layers, c_layers, list(inputs), rows, columns, deadline)
    except BudgetSpent:
        return Isomorphism(False, "the budget ran out before the weights were compared")


def _compared(target, candidate, t_layers, c_layers, inputs, rows, columns, deadline) -> Isomorphism:
    """The permutation search and weight comparison; BudgetSpent at `deadline`."""
    # A permutation keeps each embedding's entries: where they differ (a
    # rotated or mixed residual), no permutation is worth searching for.
    for name, mine, theirs in (
        ("token embeddings", target.token_embed, candidate.token_embed[rows]),
        ("position embeddings", target.pos_embed, candidate.pos_embed),
        ("unembeddings", target.unembed, candidate.unembed[:, columns]),
    ):
        if not _close(np.sort(mine, axis=None), np.sort(theirs, axis=None)):
            return Isomorphism(False, f"{name} differ (their entries, whatever the permutation)")
    inputs = inputs[:SIGNATURE_INPUTS]
    t_sig = _signatures(target, t_layers, inputs, np.arange(len(target.spec.input_vocab)), None)
    check_deadline(deadline)
    c_sig = _signatures(candidate, c_layers, inputs, rows, columns)
    check_deadline(deadline)
    t_colours, c_colours = _refined_colours(t_sig, t_layers, c_sig, c_layers, deadline)
    perm = _match(t_colours, c_colours)
    if perm is None:
        return Isomorphism(False, "no residual permutation matches the dimensions' signatures")

    # perm[i]: the candidate dimension that plays target dimension i.
    if not _close(target.token_embed, candidate.token_embed[rows][:, perm]):
        return Isomorphism(False, "token embeddings differ")
    if not _close(target.pos_embed, candidate.pos_embed[:, perm]):
        return Isomorphism(False, "position embeddings differ")
    if not _close(target.unembed, candidate.unembed[perm][:, columns]):
        return Isomorphism(False, "unembeddings differ")
    for index, (mine, theirs) in enumerate(zip(t_layers, c_layers)):
        why = _sublayer_difference(mine, _permuted(theirs, perm), deadline)
        if why:
            return Isomorphism(False, f"sublayer {index} ({mine.kind}): {why}")
    return Isomorphism(
        True, f"equal up to a residual permutation, head and hidden-unit order ({len(t_layers)} sublayers)"
    )


def _output_columns(target: Model, candidate: Model) -> np.ndarray | None:
    if target.spec.numerical:
        return np.array([0])
    index = {value_key(v): i for i, v in enumerate(candidate.spec.output_values)}
    wanted = [value_key(v) for v in target.spec.output_values]
    if sorted(index, key=repr) != sorted(wanted, key=repr):
        return None
    return np.array([index[k] for k in wanted])


def _sublayers(model: Model) -> list[_Sublayer]:
    """The sublayers that write something, in order, with their heads'
    circuits and their MLP units; silent heads and units dropped."""
    out = []
    for layer in model.layers:
        circuits = (_circuits(h) for h in layer.heads if h.query_w.shape[1])
        heads = tuple((qk, ov) for qk, ov in circuits if np.any(ov))
        if heads or np.any(layer.attn_output_b):
            out.append(_Sublayer("attn", heads=heads, bias=layer.attn_output_b))
        units = _mlp_units(layer)
        if len(units) or np.any(layer.mlp_out_b):
            out.append(_Sublayer("mlp", units=units, bias=layer.mlp_out_b))
    return out


def _circuits(head) -> tuple[np.ndarray, np.ndarray]:
    q = np.vstack([head.query_w, head.query_b[None]]).astype(np.float64)
    k = np.vstack([head.key_w, head.key_b[None]]).astype(np.float64)
    v = np.vstack([head.value_w, head.value_b[None]]).astype(np.float64)
    return q @ k.T / np.sqrt(q.shape[1]), v @ head.output_w.astype(np.float64)


def _mlp_units(layer: LayerWeights) -> np.ndarray:
    units = np.hstack([layer.mlp_in_w.T, layer.mlp_in_b[:, None], layer.mlp_out_w]).astype(np.float64)
    writes = np.any(layer.mlp_out_w != 0, axis=1)
    return units[writes]


def _signatures(
    model: Model, sublayers: list[_Sublayer], inputs: list, rows: np.ndarray, columns: np.ndarray | None
) -> np.ndarray:
    """One row per residual dimension, invariant under every symmetry but
    the residual permutation itself (which it is for finding)."""
    d = model.d_model
    parts = [model.token_embed[rows].T, model.pos_embed.T]
    unembed = model.unembed if columns is None else model.unembed[:, columns]
    parts.append(unembed)
    if inputs:
        parts.append(np.concatenate(model.residuals(inputs)).T)
    for sub in sublayers:
        if sub.kind == "attn":
            # Each dimension's row and column in every head's circuits, as one
            # sorted multiset: invariant under head order and the permutation.
            entries = [m for qk, ov in sub.heads for m in (qk[:d], qk[:, :d].T, ov[:d], ov.T)]
            parts.append(np.sort(np.hstack(entries), axis=1) if entries else np.zeros((d, 0)))
        else:
            ins, outs = sub.units[:, :d], sub.units[:, d + 1 :]
            parts.append(np.hstack([np.sort(ins.T, axis=1), np.sort(outs.T, axis=1)]))
        parts.append(sub.bias[:, None])
    return np.round(np.hstack(parts).astype(np.float64), SIGNATURE_DECIMALS) + 0.0


def _refined_colours(
    t_sig: np.ndarray,
    t_layers: list[_Sublayer],
    c_sig: np.ndarray,
    c_layers: list[_Sublayer],
    deadline: float | None = None,
) -> tuple[list[int], list[int]]:
    """Colour refinement (Weisfeiler-Lehman) of both models' residual
    dimensions, with one shared palette: start from the signatures, then
    repeatedly recolour each dimension by the colours of what it connects to
    (hidden units, other dimensions through a head's circuits) and the
    weights on the connections, until the number of colours stops growing.
    Dimensions a signature cannot tell apart (a selector width's output
    values, whose weights are shifted copies) get apart this way."""
    palette: dict = {}

    def paint(key) -> int:
        return palette.setdefault(key, len(palette))

    colours = [[paint(row.tobytes()) for row in sig] for sig in (t_sig, c_sig)]
    links = [_links(layers, len(sig), deadline) for layers, sig in ((t_layers, t_sig), (c_layers, c_sig))]
    count = len(set(colours[0]) | set(colours[1]))
    for _ in range(len(t_sig)):
        check_deadline(deadline)
        refined = []
        for colour, (unit_links, dim_links) in zip(colours, links):
            check_deadline(deadline)
            units = [
                paint(("unit", bias, tuple(sorted((colour[d], tag) for d, tag in edges))))
                for bias, edges in unit_links
            ]
            refined.append(
                [
                    paint(
                        (
                            colour[d],
                            tuple(sorted((units[u], w) for u, w in dim_links[d][0])),
                            tuple(sorted((tag, colour[e], w) for tag, e, w in dim_links[d][1])),
                        )
                    )
                    for d in range(len(colour))
                ]
            )
        new_count = len(set(refined[0]) | set(refined[1]))
        colours = refined
        if new_count == count:
            break
        count = new_count
    return colours[0], colours[1]


def _links(sublayers: list[_Sublayer], d: int, deadline: float | None = None) -> tuple[list, list]:
    """The weighted connections colour refinement follows: per hidden unit,
    its bias and (dimension, weight) pairs; per dimension, its (unit, weight) pairs
    and its (kind, other dimension, weight) entries in heads' circuits.
    Weights are rounded to `SIGNATURE_DECIMALS` and tagged by sublayer."""
    unit_links: list[list] = []
    dim_links: list[tuple[list, list]] = [([], []) for _ in range(d)]
    for index, sub in enumerate(sublayers):
        check_deadline(deadline)
        if sub.kind == "mlp":
            for row in sub.units:
                u = len(unit_links)
                edges = [(d_, (index, "in", w)) for d_, w in _nonzero(row[:d])]
                edges += [(d_, (index, "out", w)) for d_, w in _nonzero(row[d + 1 :])]
                unit_links.append((round(float(row[d]), SIGNATURE_DECIMALS), edges))
                for d_, tag in edges:
                    dim_links[d_][0].append((u, tag))
        else:
            for qk, ov in sub.heads:
                for name, matrix in (("qk", qk[:d, :d]), ("ov", ov[:d])):
                    for i, j in zip(*np.nonzero(np.round(matrix, SIGNATURE_DECIMALS))):
                        w = round(float(matrix[i, j]), SIGNATURE_DECIMALS)
                        dim_links[i][1].append(((index, name, "row"), int(j), w))
                        dim_links[j][1].append(((index, name, "col"), int(i), w))
    return unit_links, dim_links


def _nonzero(vector: np.ndarray) -> list[tuple[int, float]]:
    rounded = np.round(vector, SIGNATURE_DECIMALS)
    return [(int(i), float(rounded[i])) for i in np.flatnonzero(rounded)]


def _match(target_colours: list[int], candidate_colours: list[int]) -> np.ndarray | None:
    """perm with candidate_colours[perm[i]] == target_colours[i]."""
    if len(target_colours) != len(candidate_colours):
        return None
    groups: dict[int, list[int]] = defaultdict(list)
    for j, colour in enumerate(candidate_colours):
        groups[colour].append(j)
    perm = np.empty(len(target_colours), dtype=np.int64)
    for i, colour in enumerate(target_colours):
        bucket = groups.get(colour)
        if not bucket:
            return None
        perm[i] = bucket.pop(0)
    return perm


def _permuted(sub: _Sublayer, perm: np.ndarray) -> _Sublayer:
    """A candidate sublayer in the target's residual order."""
    d = len(perm)
    augmented = np.append(perm, d)  # the bias row stays last
    if sub.kind == "attn":
        heads = tuple((qk[augmented][:, augmented], ov[augmented][:, perm]) for qk, ov in sub.heads)
        return _Sublayer("attn", heads=heads, bias=sub.bias[perm])
    columns = np.concatenate([perm, [d], d + 1 + perm])
    return _Sublayer("mlp", units=sub.units[:, columns], bias=sub.bias[perm])


def _sublayer_difference(mine: _Sublayer, theirs: _Sublayer, deadline: float | None = None) -> str | None:
    if not _close(mine.bias, theirs.bias):
        return "output biases differ"
    if mine.kind == "attn":
        left = list(theirs.heads)
        for qk, ov in mine.heads:
            match = next((i for i, (q2, o2) in enumerate(left) if _close(qk, q2) and _close(ov, o2)), None)
            if match is None:
                return "a head's QK or OV circuit has no equal"
            left.pop(match)
        return None
    left = list(range(len(theirs.units)))
    scale = max(float(np.abs(mine.units).max(initial=0.0)), 1e-30)
    for unit in mine.units:
        check_deadline(deadline)
        match = next((i for i in left if np.allclose(unit, theirs.units[i], rtol=0, atol=RTOL * scale)), None)
        if match is None:
            return "a hidden unit has no equal"
        left.remove(match)
    return None


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)), 1e-30)
    return bool(np.allclose(a, b, rtol=0, atol=RTOL * scale))
