"""Basis recovery: a model whose residual is in any basis, re-expressed in tracr's.

In: a `Model` whose residual stream was rotated, mixed by any invertible
map, or projected onto the span of the states it visits (lossless
compression). Out: a `Model` that computes the same thing on those states,
with one residual dimension per value of every SOp, plus `one`, the tokens
and the indices, laid out as tracr lays them out up to order (and up to the
scale of numerical SOps), for `residual_structure` to read. Raises
`NotTracrStructured` where the writes do not decompose as tracr's do.

How:
- Every value of every SOp is a direction: the vector written when the SOp
  holds that value. Token embedding rows are `one` plus the token's direction,
  and the tokens sum to `one` at every position, which fixes both. Position
  embedding rows are the indices.
- A head's directions are the images, through its OV circuit, of the
  directions it reads as values (one per value, so blends never matter).
- An MLP layer's hidden units split into groups that write independent
  subspaces: the components of the linear matroid of their output rows,
  taken modulo everything written before (a discretising `start` unit joins
  its steps). When a group's outputs on the probe inputs are all multiples
  of one vector, it is one numerical SOp. Otherwise its values are whole
  numbers of its unit rows' lines (`_categorical_values`), so blends near a
  threshold never become directions, and values no probe reached come from
  the weights.
- Writes are re-expressed on the writer's own directions, exactly or not at
  all. Reads are the read maps applied to every direction written so far.
- Gauge: the lifted states obey linear relations (the tokens sum to `one`; a
  categorical SOp's values sum to `one` except at BOS), so a read is fixed
  only up to shifts along them, and a projection loses the shift altogether.
  Each column of a read is shifted to make as many of its entries zero as it
  can: tracr reads only what it uses.
"""

from __future__ import annotations

import numpy as np

from raspsynth.errors import NotTracrStructured, check_deadline
from raspsynth.symbolic.probing import head_writes
from raspsynth.symbolic.residual_structure import check_biases
from raspsynth.tracr_bridge.model import HeadWeights, LayerWeights, Model
from raspsynth.tracr_bridge.probes import probe_inputs

# Probe inputs whose states show each writer's values, at most.
BASIS_PROBES = 1500
# Relative size below which a computed read, write or residual is zero:
# float32 weights through a change of basis carry rounding near 1e-7 of
# their scale, tracr's smallest weights are far above 1e-3 of it.
ZERO = 1e-5
# Gauge candidates scored at once (bounds memory on wide blocks).
_CANDIDATE_CHUNK = 16


def recover_basis(model: Model, seed: int = 0, deadline: float | None = None) -> Model:
    """`model` re-expressed with one residual dimension per SOp value (see the
    module docstring); raises NotTracrStructured when that fails. Exact on the
    states the model visits on its probe inputs; verification decides the rest."""
    check_biases(model)  # a change of basis keeps tracr's biases zero
    if _axis_aligned(model):
        # Lifting gives back the same layout: whatever the reader objected to, the basis is not it.
        raise NotTracrStructured("the residual is already axis-aligned (one-hot embeddings)")
    seqs = probe_inputs(model, exhaustive_bound=BASIS_PROBES, n_random=BASIS_PROBES, seed=seed)
    lifting = _Lifting(model, list(model.visited_states(seqs)), deadline)
    for index, layer in enumerate(model.layers):
        lifting.lift_attention(index, layer)
        lifting.lift_mlp(index, layer)
    return lifting.lifted_model()


def _axis_aligned(model: Model) -> bool:
    """Whether the embeddings are tracr's own: every entry 0 or 1."""
    embeds = np.concatenate([model.token_embed.ravel(), model.pos_embed.ravel()])
    return bool(np.all((np.abs(embeds) <= ZERO) | (np.abs(embeds - 1) <= ZERO)))


def _norms(rows: np.ndarray) -> np.ndarray:
    return np.sqrt((rows * rows).sum(axis=-1))


def _distinct_rows(rows: np.ndarray, tol: float) -> np.ndarray:
    """One representative of each cluster of rows within `tol` of each other."""
    keys = np.round(rows / tol).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    reps = np.empty((len(first), rows.shape[1]), dtype=rows.dtype)
    n = 0
    for row in rows[np.sort(first)]:  # rounding can split a cluster at a grid line: merge by distance
        if not n or np.abs(reps[:n] - row).max(axis=1).min() > 4 * tol:
            reps[n] = row
            n += 1
    return reps[:n]


def _unit_lines(rows: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """The lines the unit rows [U, D] lie on: (edges [E, D], scale [U, E]),
    each row being its scale times its line's edge (a row of norm at most
    `tol` on none)."""
    edges: list[np.ndarray] = []
    scale = np.zeros((len(rows), len(rows)))
    for u, row in enumerate(rows):
        if _norms(row) <= tol:
            continue
        for e, edge in enumerate(edges):
            s = row @ edge / (edge @ edge)
            if _norms(row - s * edge) <= tol:
                scale[u, e] = s
                break
        else:
            scale[u, len(edges)] = 1.0
            edges.append(row)
    return np.array(edges).reshape(len(edges), rows.shape[1]), scale[:, : len(edges)]


def _has_steps(scale: np.ndarray) -> bool:
    """Whether some line (a column of `_unit_lines`' scale) carries units of
    both signs: a discretising pair, writing a step up and back."""
    return bool(((scale > 0).any(axis=0) & (scale < 0).any(axis=0)).any())


def _categorical_values(pre: np.ndarray, edges: np.ndarray, scale: np.ndarray, tol: float) -> np.ndarray:
    """The values a categorical MLP group writes, from its units' pre-
    activations [N, U] at non-BOS positions and the lines of their rows
    (`_unit_lines`).

    In every tracr MLP with a categorical output each line of unit rows
    carries a whole number of its edge. A Map's or a SequenceMap's unit writes
    its value once: every line is a value, reached or not. A discretising
    MLP (numerical to categorical, SelectorWidth) writes its first value from
    a `start` unit and each step to the next value from a pair of units with
    opposite rows, 0 or 1 times. Only within 1/large_number of a threshold (a
    SelectorWidth near max_seq_len) does a pair write part of its step, a
    blend of two neighbouring values: both are taken. Its values no probe
    reached come from its units' thresholds along the one number it reads."""
    counts = [np.maximum(pre, 0.0) @ scale]  # how many of each edge every position writes
    if not _has_steps(scale):
        counts.append(np.eye(len(edges)))
    else:
        synthetic = _along_one_number(pre)
        if synthetic is not None:
            counts.append(synthetic @ scale)
    counts = np.vstack(counts)
    # Rounding within 1e-3: float32 activations of size large_number carry 1e-5.
    # (+ 0.0 makes -0.0 a 0.0, which np.unique would keep apart.)
    whole = np.unique(np.vstack([np.floor(counts + 1e-3), np.ceil(counts - 1e-3)]) + 0.0, axis=0)
    values = whole @ edges
    return values[_norms(values) > tol]


def _along_one_number(pre: np.ndarray) -> np.ndarray | None:
    """Hidden activations [K, U] on each side of every threshold, where every
    unit's pre-activation [N, U] is affine in one number the positions hold
    (a discretising MLP reads one numerical SOp, and `one`); None otherwise."""
    spread = np.ptp(pre, axis=0)
    if spread.max(initial=0.0) == 0:
        return None
    number = pre[:, spread.argmax()]
    design = np.stack([number, np.ones_like(number)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, pre, rcond=None)
    if np.abs(design @ np.stack([slope, intercept]) - pre).max() > 1e-4 * np.abs(pre).max():
        return None
    # A unit that does not move with the number over the probes (a `start`,
    # a BOS cleaner) keeps its value: a slope of rounding noise would put its
    # threshold anywhere.
    moving = np.abs(slope) * np.ptp(number) > 1e-3 * np.abs(pre).max()
    if not moving.any():
        return None
    slope, intercept = np.where(moving, slope, 0.0), np.where(moving, intercept, pre.mean(axis=0))
    thresholds = np.unique(-intercept[moving] / slope[moving])
    reach = max(thresholds.max() - thresholds.min(), np.abs(thresholds).max(), 1.0)
    points = np.r_[thresholds.min() - reach, (thresholds[1:] + thresholds[:-1]) / 2, thresholds.max() + reach]
    return np.maximum(points[:, None] * slope + intercept, 0.0)


def _unreached_value(rows: np.ndarray, reached: np.ndarray) -> np.ndarray:
    """The direction of a value no probe reached, from the unit rows that
    write it: a row itself (a categorical Map's unit) or a row plus or minus
    a known value (tracr's discretising units write differences of
    neighbouring values). Value directions are alike in length (exactly so
    under a rotation): the candidate closest to the known ones' is taken."""
    candidates = [r + sign * k for r in rows for k in reached for sign in (1.0, -1.0)] + list(rows)
    typical = np.median(_norms(reached)) if len(reached) else np.median(_norms(rows))
    return min(candidates, key=lambda c: abs(np.log(max(_norms(c), 1e-300) / typical)))


def _matroid_components(rows: np.ndarray, tol: float, deadline: float | None) -> list[list[int]]:
    """Groups of rows that are linearly connected: the components of their
    linear matroid, from each dependent row's fundamental circuit over a
    greedy basis. Rows of norm below `tol` are left out."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    basis: list[int] = []
    live = [i for i in range(len(rows)) if _norms(rows[i]) > tol]
    for i in live:
        check_deadline(deadline)
        if basis:
            b = rows[basis].T
            coef, *_ = np.linalg.lstsq(b, rows[i], rcond=None)
            if _norms(b @ coef - rows[i]) <= tol:
                for j, c in zip(basis, coef):
                    if abs(c) > ZERO:
                        parent[find(j)] = find(i)
                continue
        basis.append(i)
    groups: dict[int, list[int]] = {}
    for i in live:
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _with_discretising_starts(
    groups: list[list[int]], hidden: np.ndarray, rows: np.ndarray, tol: float
) -> list[list[int]]:
    """`groups` with a discretising MLP's parts joined. tracr's numerical-to-
    categorical MLP writes its first value from a `start` unit that reads only
    `one` (the same activation everywhere) and each step to the next value
    from a pair of units writing the step's difference with opposite signs:
    independent rows, so the matroid splits them, though together they are
    one SOp. With one start in the layer (every tracr model we have seen)
    the start and every step group are joined; with several, which start goes
    with which steps is not decided and the groups stay apart."""

    def is_start(g: list[int]) -> bool:
        act = hidden[:, g]
        size = np.abs(act).max(initial=0.0)
        return bool(size > 0 and np.ptp(act, axis=0).max() <= 1e-6 * size)

    starts = [g for g in groups if is_start(g)]
    if len(starts) != 1:
        return groups
    steps = [g for g in groups if g is not starts[0] and _has_steps(_unit_lines(rows[g], tol)[1])]
    if not steps:
        return groups
    joined = sorted(starts[0] + [u for g in steps for u in g])
    return [g for g in groups if g is not starts[0] and not any(g is s for s in steps)] + [joined]


class _Lifting:
    """The directions found so far, each with its value at every visited
    position, the linear relations those values obey, and the lifted weights."""

    def __init__(
        self, model: Model, batches: list[tuple[np.ndarray, np.ndarray]], deadline: float | None
    ) -> None:
        self.model = model
        self.deadline = deadline
        self.batches = batches
        self.dirs: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.writer: list[int] = []
        self.relations: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        self.layers: list[dict] = []
        ids = np.concatenate([i.reshape(-1) for i, _ in batches])
        positions = np.concatenate([np.tile(np.arange(i.shape[1]), i.shape[0]) for i, _ in batches])
        self.not_bos = positions != 0
        self._lift_embeddings(ids, positions)

    # -- bookkeeping ----------------------------------------------------------
    def _add(self, direction: np.ndarray, code: np.ndarray, writer: int) -> int:
        """A new direction, its value at every visited position, and its
        writer (0 `one`, 1 the tokens, 2 the indices, then each head's and
        each MLP group's)."""
        self.dirs.append(np.asarray(direction, dtype=np.float64))
        self.codes.append(np.asarray(code, dtype=np.float64))
        self.writer.append(writer)
        return len(self.dirs) - 1

    def _states(self, stage: int) -> np.ndarray:
        """The residual before sublayer `stage`, one row per visited position."""
        return np.concatenate([s[stage].reshape(-1, s.shape[-1]) for _, s in self.batches]).astype(np.float64)

    def _relate(self, group: list[int]) -> None:
        """Record how a categorical group's values sum, if they sum to `one`
        (everywhere, or everywhere but BOS)."""
        total = np.sum([self.codes[d] for d in group], axis=0)
        one, bos = self.codes[self.one], self.codes[self.bos]
        if np.abs(total + bos - one).max() <= ZERO:
            relation = (tuple(group) + (self.bos,), (self.one,))
        elif np.abs(total - one).max() <= ZERO:
            relation = (tuple(group), (self.one,))
        else:
            return
        # Only where the directions obey it too is a read free along it: in a
        # full-rank basis every read of a categorical value is already tracr's.
        plus, minus = (np.sum([self.dirs[d] for d in side], axis=0) for side in relation)
        if _norms(plus - minus) <= ZERO * max(_norms(plus), _norms(minus)):
            self.relations.append(relation)

    def _lift_embeddings(self, ids: np.ndarray, positions: np.ndarray) -> None:
        model, spec = self.model, self.model.spec
        tok = model.token_embed.astype(np.float64)
        pos = model.pos_embed.astype(np.float64)
        scale = max(np.abs(tok).max(initial=0.0), np.abs(pos).max(initial=0.0), 1e-30)
        if _norms(pos[0]) > ZERO * scale:
            raise NotTracrStructured("the BOS position has a position embedding, which tracr never writes")
        pad = spec.input_vocab.index(spec.pad)
        live = [t for t in range(len(spec.input_vocab)) if t != pad]
        # Every live token row is one + its token, and the tokens sum to one.
        one_dir = tok[live].sum(axis=0) / (len(live) + 1)
        self.one = self._add(one_dir, np.ones(len(ids)), writer=0)
        self.tokens = [self._add(tok[t] - one_dir, ids == t, writer=1) for t in range(len(tok))]
        self.bos = self.tokens[spec.input_vocab.index(spec.bos)]
        self.pad = self.tokens[pad]
        self.indices = [self._add(pos[i], positions == i, writer=2) for i in range(1, len(pos))]
        self._relate([self.tokens[t] for t in live])
        self._relate(self.indices)

    # -- reads ----------------------------------------------------------------
    def reads(self, weights: np.ndarray) -> np.ndarray:
        """`weights` [D, K] read from every direction so far [n, K], shifted
        along the relations to as many zero rows as possible."""
        reads = np.stack(self.dirs) @ weights.astype(np.float64)
        reads[self.pad] = 0.0  # no state holds PAD: its read is free, and zero is tracr's
        tol = ZERO * max(np.abs(reads).max(initial=0.0), 1e-30)
        for _ in range(2):
            for plus, minus in self.relations:
                check_deadline(self.deadline)
                rows = list(plus) + list(minus)
                sign = np.r_[-np.ones(len(plus)), np.ones(len(minus))][:, None]
                reads[rows] = _sparsest_shift(reads[rows], sign, tol)
        if len(self.relations) > 1:
            # Relations beyond the tokens' own (which holds by construction)
            # hold as vectors only when directions are dependent (a lossless
            # projection): there the sparsest read may not be tracr's.
            reads = self._fewest_writers(reads, tol)
        return reads

    def _fewest_writers(self, reads: np.ndarray, tol: float) -> np.ndarray:
        """`reads` with writers dropped from the whole matrix while that can
        be done column by column along one relation without reading anything
        new. tracr's query, key or MLP reads its SOps in every column (and
        `one`); where the indices sum to what the tokens sum to, a query of
        every index alike reads `one` minus BOS in the sparsest form, two
        writers where tracr reads one."""
        writer = np.array(self.writer)
        relations = [
            (list(plus) + list(minus), np.r_[-np.ones(len(plus)), np.ones(len(minus))])
            for plus, minus in self.relations
        ]
        while True:
            check_deadline(self.deadline)
            union = set(writer[np.abs(reads).max(axis=1) > tol].tolist())
            # `one` stays: tracr reads a constant from it, never as every
            # token (or index) alike.
            for w in sorted(union - {0}):
                trial = self._without_writer(reads, w, union - {w}, writer, relations, tol)
                if trial is not None:
                    reads = trial
                    break
            else:
                return reads

    @staticmethod
    def _without_writer(
        reads: np.ndarray,
        w: int,
        allowed: set[int],
        writer: np.ndarray,
        relations: list[tuple[list[int], np.ndarray]],
        tol: float,
    ) -> np.ndarray | None:
        """`reads` with every column that reads writer `w` shifted along one
        relation so that it no longer does, reading only `allowed` writers;
        None where some column cannot."""
        trial = reads.copy()
        own = writer == w
        for k in np.flatnonzero(np.abs(reads[own]).max(axis=0) > tol):
            column = trial[:, k]
            for rows, sign in relations:
                inside = [i for i, r in enumerate(rows) if own[r]]
                outside = np.setdiff1d(np.flatnonzero(own), np.array(rows)[inside])
                if not inside or (np.abs(column[outside]) > tol).any():
                    continue
                shifts = -sign[inside] * column[np.array(rows)[inside]]
                if np.ptp(shifts) > tol:
                    continue
                moved = column.copy()
                moved[rows] += sign * shifts[0]
                if set(writer[np.abs(moved) > tol].tolist()) <= allowed:
                    trial[:, k] = moved
                    break
            else:
                return None
        return trial

    # -- writers --------------------------------------------------------------
    def _on_directions(self, rows: np.ndarray, group: list[int], where: str) -> np.ndarray:
        """Coefficients of `rows` [R, D] on the group's directions; raises if
        they leave the group's span."""
        basis = np.stack([self.dirs[d] for d in group])
        coef = rows @ np.linalg.pinv(basis)
        scale = max(np.abs(rows).max(initial=0.0), 1e-30)
        if np.abs(coef @ basis - rows).max(initial=0.0) > 10 * ZERO * scale:
            raise NotTracrStructured(f"{where} writes outside the directions of its values")
        return coef

    def _on_fewest_writers(
        self, rows: np.ndarray, known: list[int], group: list[int], where: str
    ) -> np.ndarray:
        """Coefficients of `rows` on `known + group`, using the group's own
        directions and as few earlier writers as express them (the latest
        first: a SelectorWidth's MLP also clears its head's output). Under a
        lossless projection a new SOp's values depend on `one` and BOS, and a
        least-norm spread over every known direction would rewrite them."""
        writers = list(dict.fromkeys(self.writer[d] for d in reversed(known)))
        for extra in [[]] + [[w] for w in writers]:
            check_deadline(self.deadline)
            chosen = [d for d in known if self.writer[d] in extra] + group
            try:
                part = self._on_directions(rows, chosen, where)
            except NotTracrStructured:
                continue
            column = {d: k for k, d in enumerate(known + group)}
            coef = np.zeros((len(rows), len(column)))
            coef[:, [column[d] for d in chosen]] = part
            return coef
        return self._on_directions(rows, known + group, where)

    def lift_attention(self, index: int, layer: LayerWeights) -> None:
        # Heads read what was written before the layer, never each other's outputs.
        heads = [
            {
                "head": h,
                "query": self.reads(h.query_w),
                "key": self.reads(h.key_w),
                "value": self.reads(h.value_w),
            }
            for h in layer.heads
        ]
        states = [s[2 * index] for _, s in self.batches]
        for h, entry in enumerate(heads):
            check_deadline(self.deadline)
            head: HeadWeights = entry["head"]
            output_w = head.output_w.astype(np.float64)
            images = entry["value"] @ output_w  # what each direction read as a value writes
            scale = np.abs(images).max(initial=0.0)
            entry["dims"], entry["out"] = [], np.zeros((len(output_w), 0))
            if scale == 0:
                continue
            read = images[_norms(images) > ZERO * scale * np.sqrt(images.shape[1])]
            writer = max(self.writer) + 1
            group = [self._add(image, np.zeros(0), writer) for image in _distinct_rows(read, ZERO * scale)]
            written = np.concatenate(
                [
                    head_writes(head, x.astype(np.float64), self.model.spec.causal).reshape(-1, x.shape[-1])
                    for x in states
                ]
            )
            codes = self._on_directions(written, group, f"L{index}.head{h}")
            for k, d in enumerate(group):
                self.codes[d] = codes[:, k]
            entry["dims"] = group
            # Exact on every output the head can reach: those are the images.
            entry["out"] = output_w @ np.linalg.pinv(np.stack([self.dirs[d] for d in group]))
        for entry in heads:
            if entry["dims"]:
                self._relate(entry["dims"])
        self.layers.append({"heads": heads})

    def lift_mlp(self, index: int, layer: LayerWeights) -> None:
        where = f"MLP {index}"
        entry = self.layers[-1]
        entry["mlp_in"] = self.reads(layer.mlp_in_w)
        out_w = layer.mlp_out_w.astype(np.float64)
        entry["mlp_out"] = out = {}
        scale = np.abs(out_w).max(initial=0.0)
        if scale == 0:
            return
        x = self._states(2 * index + 1)
        pre = x @ layer.mlp_in_w.astype(np.float64) + layer.mlp_in_b
        hidden = np.maximum(pre, 0.0)
        # Values are what non-BOS positions hold (at BOS tracr only clears);
        # positions with the same pre-activations show the same values.
        shown_pre = np.unique(pre[self.not_bos], axis=0)
        shown_hidden = np.maximum(shown_pre, 0.0)
        known = list(range(len(self.dirs)))
        _, s, vt = np.linalg.svd(np.stack(self.dirs), full_matrices=False)
        span = vt[s > ZERO * s.max()]
        beyond = out_w - (out_w @ span.T) @ span
        tol = ZERO * scale * np.sqrt(out_w.shape[1])
        inside = [u for u in range(len(out_w)) if _norms(out_w[u]) > tol and _norms(beyond[u]) <= tol]
        groups = _matroid_components(beyond, tol, self.deadline)
        if inside:
            groups += [[inside[i] for i in g] for g in _matroid_components(out_w[inside], tol, self.deadline)]
        groups = _with_discretising_starts(groups, hidden, out_w, tol)
        for units in groups:
            check_deadline(self.deadline)
            edges, unit_scale = _unit_lines(out_w[units], tol)
            # Distinct writes are distinct counts of the edges (fewer columns).
            counts = shown_hidden[:, units] @ unit_scale
            shown = _distinct_rows(counts, ZERO * max(np.abs(counts).max(initial=0.0), 1e-30)) @ edges
            wscale = max(np.abs(shown).max(initial=0.0), scale)
            reps = shown[_norms(shown) > ZERO * wscale * np.sqrt(shown.shape[1])]
            if len(reps) > 1 and np.linalg.matrix_rank(reps, tol=ZERO * wscale * np.sqrt(reps.shape[1])) == 1:
                # All multiples of one vector: a numerical SOp, its largest value positive.
                top = reps[_norms(reps).argmax()]
                reps = top[None] / _norms(top)
            else:
                values = _categorical_values(shown_pre[:, units], edges, unit_scale, tol)
                reps = _distinct_rows(values, ZERO * wscale)
            directions = list(reps)
            while True:  # values no probe reached, the likeliest first
                check_deadline(self.deadline)
                basis = np.array(self.dirs + directions)
                rows = out_w[units]
                missing = rows[_norms(rows - rows @ np.linalg.pinv(basis) @ basis) > tol]
                if not len(missing):
                    break
                directions.append(_unreached_value(missing, np.array(directions)))
            writer = max(self.writer) + 1
            group = [self._add(d, np.zeros(len(self.not_bos)), writer) for d in directions]
            coef = self._on_fewest_writers(out_w[units], known, group, where)
            out[tuple(units)] = (known + group, coef)
            targets = known + group
            written = np.flatnonzero(np.abs(coef).max(axis=0) > 0)  # most groups touch few directions
            codes = hidden[:, units] @ coef[:, written]
            for k, column in zip(written, codes.T):
                self.codes[targets[k]] = self.codes[targets[k]] + column
            self._relate(group)
        self._check_relations()

    def _check_relations(self) -> None:
        """Forget relations a write into known dimensions broke."""
        codes = np.stack(self.codes)
        self.relations = [
            (plus, minus)
            for plus, minus in self.relations
            if np.abs(codes[list(plus)].sum(axis=0) - codes[list(minus)].sum(axis=0)).max() <= ZERO
        ]

    # -- the lifted model -----------------------------------------------------
    def lifted_model(self) -> Model:
        model, n = self.model, len(self.dirs)
        unembed = self.reads(model.unembed)
        # A numerical direction's scale and sign are a free choice, except that
        # tracr unembeds a numerical output with weight 1: rescale it so.
        scale = np.ones(n)
        if model.spec.numerical:
            read = np.flatnonzero(np.abs(unembed[:, 0]) > ZERO * np.abs(unembed).max(initial=1e-30))
            if len(read) == 1 and read[0] not in (self.one, *self.tokens, *self.indices):
                scale[read[0]] = unembed[read[0], 0]

        def padded(reads: np.ndarray) -> np.ndarray:
            full = np.zeros((n, reads.shape[1]))
            full[: len(reads)] = reads * scale[: len(reads), None]
            return _clean(full)

        def written(width: int, parts) -> np.ndarray:
            full = np.zeros((width, n))
            for rows, group, coef in parts:
                full[np.ix_(rows, group)] = coef / scale[group]
            return _clean(full)

        layers = []
        for original, entry in zip(model.layers, self.layers):
            heads = []
            for e in entry["heads"]:
                head: HeadWeights = e["head"]
                k = head.output_w.shape[0]
                heads.append(
                    HeadWeights(
                        padded(e["query"]),
                        head.query_b,
                        padded(e["key"]),
                        head.key_b,
                        padded(e["value"]),
                        head.value_b,
                        written(k, [(list(range(k)), e["dims"], e["out"])] if e["dims"] else []),
                    )
                )
            parts = [(list(units), group, coef) for units, (group, coef) in entry["mlp_out"].items()]
            layers.append(
                LayerWeights(
                    tuple(heads),
                    np.zeros(n),
                    padded(entry["mlp_in"]),
                    original.mlp_in_b,
                    written(original.mlp_out_w.shape[0], parts),
                    np.zeros(n),
                )
            )
        spec = model.spec
        token_embed = np.zeros((len(spec.input_vocab), n))
        token_embed[:, self.one] = 1.0
        token_embed[np.arange(len(self.tokens)), self.tokens] = 1.0
        pos_embed = np.zeros((spec.max_seq_len + 1, n))
        pos_embed[np.arange(1, spec.max_seq_len + 1), self.indices] = 1.0
        return Model(token_embed, pos_embed, tuple(layers), padded(unembed), spec)


def _sparsest_shift(block: np.ndarray, sign: np.ndarray, tol: float) -> np.ndarray:
    """`block` [R, K], the reads of a relation's rows, plus sign * m for the
    shift m [K] that leaves each column the most zero entries, then the least
    L1 (m = 0 on a tie). Columns are separate units or heads' dimensions, each
    free along the relation on its own: a `start` unit reads `one`, its
    neighbours read the tokens."""
    best = block.copy()
    best_key = np.full(block.shape[1], -np.inf)
    # Each candidate zeroes one row of the block, or keeps it (m = 0 first).
    candidates = np.vstack([np.zeros((1, block.shape[1])), -sign * block])
    # Above any candidate's L1, so that the L1 term only breaks ties in zeros.
    most_l1 = 2 * (len(block) + 1) * np.abs(block).max(axis=0) + 1e-30
    for start in range(0, len(candidates), _CANDIDATE_CHUNK):
        chunk = candidates[start : start + _CANDIDATE_CHUNK]
        after = block[None] + sign[None] * chunk[:, None, :]  # [C, R, K]
        size = np.abs(after)
        key = (size <= tol).sum(axis=1) - 0.5 * size.sum(axis=1) / most_l1  # [C, K]
        pick = key.argmax(axis=0)
        better = key[pick, np.arange(block.shape[1])] > best_key + 1e-12
        best[:, better] = after[pick[better], :, np.flatnonzero(better)].T
        best_key[better] = key[pick[better], np.flatnonzero(better)]
    return best


def _clean(weights: np.ndarray) -> np.ndarray:
    """Entries below ZERO of the largest set to exactly zero (rounding left
    by the change of basis), so the reader sees tracr's sparsity."""
    out = weights.copy()
    out[np.abs(out) <= ZERO * max(np.abs(out).max(initial=0.0), 1e-30)] = 0.0
    return out
