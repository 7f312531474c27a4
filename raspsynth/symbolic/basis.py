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
  taken modulo everything written before. A discretising MLP's steps join
  by the one number they read, and take a `start` unit each
  (`_with_discretising_starts`); the unit that clears SelectorWidths at BOS
  is lifted after them, as a multiple of what the layer holds there. A
  SelectorWidth whose width the probes hold constant writes 1/(w+1) as a
  multiple of `one`; its MLP is read back from the head with the slope that
  puts its steps on tracr's thresholds (`_width_steps`). When
  every unit of a group writes the same row, it is one value; when its
  outputs on the probe inputs are all multiples of one vector, one numerical
  SOp. A group whose lines carry no step (Maps, SequenceMaps) writes each
  line as a value, its units their lines exactly (under a projection one
  group can hold several SOps whose values sum alike; the reader tells
  them apart). Where a projection put values of two such SOps on one line,
  their units fire together there: the line is copied once per SOp
  (`_line_per_sop`), and each SOp, as the values' patterns split them,
  gets a writer and a sum relation of its own. Otherwise its values are
  whole numbers of its unit rows' lines (`_categorical_values`), so blends
  near a threshold never become directions, and values no probe reached
  come from the weights.
- Writes are re-expressed on the writer's own directions, exactly or not at
  all. Reads are the read maps applied to every direction written so far.
- Interference: under a learned compression (writes through W, reads
  through W^T) reads are off by up to a few 1e-2 of their scale, and the
  directions obey the states' relations only as well. How far the indices'
  directions miss summing to what the tokens' sum to measures it
  (`Lifted.interference`); reads, dependencies among directions and the
  reader's bits are then exact only to a margin of it, and verification of
  the program against the model itself decides.
- Gauge: the lifted states obey linear relations (the tokens sum to `one`; a
  categorical SOp's values sum to `one` except at BOS; two SelectorWidths of
  one layer hold one value each), so a read is fixed only up to shifts along
  them, and a projection loses the shift altogether. Each column of a read
  is shifted to make as many of its entries zero as it can: tracr reads only
  what it uses. In a full-rank basis reads are already tracr's, and only
  relations the directions obey too (or a start pairing) are used. Under a
  projection tracr's read is the lifted one plus some combination of the
  directions' dependencies (`_dependencies`): the exact search
  `_fewest_writers` finds the one reading the fewest SOps, then the fewest
  entries.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools

import numpy as np

from raspsynth.errors import NotTracrStructured, check_deadline
from raspsynth.symbolic.probing import head_writes
from raspsynth.symbolic.residual_structure import BIT_TOLERANCE, check_biases, exact_covers
from raspsynth.tracr_bridge.model import HeadWeights, LayerWeights, Model
from raspsynth.tracr_bridge.probes import probe_inputs

# Probe inputs whose states show each writer's values, at most.
BASIS_PROBES = 1500
# Relative size below which a computed read, write or residual is zero:
# float32 weights through a change of basis carry rounding near 1e-7 of
# their scale, tracr's smallest weights are far above 1e-3 of it.
ZERO = 1e-5
# Absolute difference below which two lifted values (how many times a
# position holds a direction: 0 or 1 for a categorical value) agree: float32
# activations of size large_number (100) carry about 1e-5 of it.
CODE_TOL = 1e-3
# How many times the measured interference (`_Lifting.interference`) a read
# or a dependency among directions may be off and still be taken as zero.
NOISE_MARGIN = 4.0
# The largest relative size of a combination of directions that are taken
# as dependent (see `_Lifting._relate`): between rounding or a learned
# compression's interference (at most a few 1e-2) and the size 1 that
# independent directions give.
DEPENDENT = 0.1
# How far beyond the largest read error an MLP output may be from 0 or 1
# and still be a bit: a unit sums a few reads, each off by up to that error.
BIT_MARGIN = 4.0
# A categorical Map's or SequenceMap's hidden unit is 1 where it fires (its
# input value one-hot; ReLU(x + y - 1) for a pair) and 0 elsewhere. A hidden
# activity does not depend on the residual basis (the states and the read
# weights change together), so the same line tells firing from rounding noise
# under any rotation or projection; a learned compression moves it by its
# interference, far less than half.
UNIT_FIRES = 0.5
# The most writers besides `one` a read of tracr's reads: a SequenceMap's two
# inputs, and BOS (the tokens) for a key.
MAX_READ_WRITERS = 3
# Gauge candidates scored at once (bounds memory on wide blocks).
_CANDIDATE_CHUNK = 16


@dataclasses.dataclass(frozen=True)
class Lifted:
    """A model re-expressed in tracr's basis (`model`), and the interference
    measured in the original (`interference`: 0 for a change of basis or a
    projection up to rounding; a learned compression's relative read error).
    The lifted weights carry the interference's errors: an MLP's categorical
    output is a bit within `bit_tolerance` of 0 or 1."""

    model: Model
    interference: float

    @property
    def bit_tolerance(self) -> float:
        # Below a quarter: still nearer a whole number than a blend halfway.
        return min(max(BIT_TOLERANCE, BIT_MARGIN * _zero_under(self.interference)), 0.25)


def recover_basis(model: Model, seed: int = 0, deadline: float | None = None) -> Model:
    """`model` re-expressed with one residual dimension per SOp value (see the
    module docstring); raises NotTracrStructured when that fails. Exact on the
    states the model visits on its probe inputs; verification decides the rest."""
    return lift(model, seed, deadline).model


def lift(model: Model, seed: int = 0, deadline: float | None = None) -> Lifted:
    """`recover_basis`, with the interference it measured on the way."""
    check_biases(model)  # a change of basis keeps tracr's biases zero
    if _axis_aligned(model):
        # Lifting gives back the same layout: whatever the reader objected to, the basis is not it.
        raise NotTracrStructured("the residual is already axis-aligned (one-hot embeddings)")
    seqs = probe_inputs(model, exhaustive_bound=BASIS_PROBES, n_random=BASIS_PROBES, seed=seed)
    lifting = _Lifting(model, list(model.visited_states(seqs)), deadline)
    for index, layer in enumerate(model.layers):
        lifting.lift_attention(index, layer)
        lifting.lift_mlp(index, layer)
    return Lifted(lifting.lifted_model(), lifting.interference)


def _axis_aligned(model: Model) -> bool:
    """Whether the embeddings are tracr's own: every entry 0 or 1."""
    embeds = np.concatenate([model.token_embed.ravel(), model.pos_embed.ravel()])
    return bool(np.all((np.abs(embeds) <= ZERO) | (np.abs(embeds - 1) <= ZERO)))


def _zero_under(interference: float) -> float:
    """The relative size below which a read, or a combination of directions,
    is zero where reads carry `interference` (`ZERO` without any)."""
    return max(ZERO, NOISE_MARGIN * interference)


def _zero_of(weights: np.ndarray) -> float:
    """The size below which an entry of `weights` is zero: ZERO of the largest."""
    return ZERO * max(np.abs(weights).max(initial=0.0), 1e-30)


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


def _line_per_sop(edges: np.ndarray, scale: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lines of a Map's or SequenceMap's units (`_unit_lines`: edges
    [E, D], scale [U, E]) with a line copied once for each SOp that writes
    it. tracr fires one hidden unit of such an MLP at a time, so units on one
    line that fire together (`active` [P, U], the hidden activity of the
    visited patterns) write values of different SOps that a projection put
    on one line (two values always held together, or whose sums with the
    other values match). Each line's units are coloured greedily in order
    (tracr lays out each SOp's units together), none of a copy firing with
    another of it. A unit fires at tracr's level (`UNIT_FIRES`), whatever
    the basis: the units of values the probes never reach sit at rounding
    noise, which says nothing of firing."""
    firing = active > UNIT_FIRES
    together = (firing.T.astype(np.int64) @ firing.astype(np.int64)) > 0
    lines, columns = [], []
    for e, edge in enumerate(edges):
        copies: list[list[int]] = []
        for u in np.flatnonzero(scale[:, e]):
            copy = next((c for c in copies if not together[u, c].any()), None)
            if copy is None:
                copies.append([u])
            else:
                copy.append(u)
        for copy in copies:
            column = np.zeros(len(scale))
            column[copy] = scale[copy, e]
            lines.append(edge)
            columns.append(column)
    if len(lines) == len(edges):
        return edges, scale
    return np.array(lines), np.stack(columns, axis=1)


def _on_one_line(values: np.ndarray, scale: float) -> bool:
    """Whether several written values [V, D] are all multiples of one vector."""
    return len(values) > 1 and np.linalg.matrix_rank(values, tol=ZERO * scale * np.sqrt(values.shape[1])) == 1


def _numerical_direction(values: np.ndarray) -> np.ndarray:
    """[1, D]: the unit direction of a numerical SOp's values [V, D], its largest value positive."""
    top = values[_norms(values).argmax()]
    return top[None] / _norms(top)


def _has_steps(scale: np.ndarray) -> bool:
    """Whether some line (a column of `_unit_lines`' scale) carries units of
    both signs: a discretising pair, writing a step up and back."""
    return bool(((scale > 0).any(axis=0) & (scale < 0).any(axis=0)).any())


def _categorical_values(
    pre: np.ndarray,
    edges: np.ndarray,
    scale: np.ndarray,
    tol: float,
    line: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The values a discretising MLP group writes, from its units' pre-
    activations [N, U] at non-BOS positions and the lines of their rows
    (`_unit_lines`, some line carrying a step: `_has_steps`).

    In every tracr MLP with a categorical output each line of unit rows
    carries a whole number of its edge. (A Map's or a SequenceMap's unit
    writes its value once: every line is a value, reached or not; `lift_mlp`
    takes those lines as they are.) A discretising
    MLP (numerical to categorical, SelectorWidth) writes its first value from
    a `start` unit and each step to the next value from a pair of units with
    opposite rows, 0 or 1 times. Only within 1/large_number of a threshold (a
    SelectorWidth near max_seq_len) does a pair write part of its step, a
    blend of two neighbouring values: both are taken. Its values no probe
    reached come from its units' thresholds along the one number it reads,
    fitted to the probes or, where the probes hold that number constant, from
    the weights: `line`, each unit's (slope, intercept) along it."""
    counts = [np.maximum(pre, 0.0) @ scale]  # how many of each edge every position writes
    synthetic = _around_thresholds(_fitted_line(pre) or line)
    if synthetic is not None:
        counts.append(synthetic @ scale)
    counts = np.vstack(counts)
    # Counts are lifted values: whole within CODE_TOL, and 0 or 1 (a unit
    # fires its step once or not at all; a count past that is a synthetic
    # point the fitted line carried beyond the last threshold). (+ 0.0 makes
    # -0.0 a 0.0, which np.unique would keep apart.)
    whole = np.unique(np.vstack([np.floor(counts + CODE_TOL), np.ceil(counts - CODE_TOL)]) + 0.0, axis=0)
    whole = whole[((whole == 0) | (whole == 1)).all(axis=1)]
    values = whole @ edges
    return values[_norms(values) > tol]


def _fitted_line(pre: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(slope, intercept) [U] of every unit's pre-activation [N, U] along one
    number the positions hold (a discretising MLP reads one numerical SOp,
    and `one`); None where the probes do not show such a number moving."""
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
    return np.where(moving, slope, 0.0), np.where(moving, intercept, pre.mean(axis=0))


def _line_from_reads(number_reads: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(slope, intercept) [U] of units along the one number they read, from
    their reads [n, U] of everything but `one`, BOS and PAD (rank one for a
    discretising MLP) and their pre-activation from `one` and the bias: the
    weights' `_fitted_line`, for a number the probes never move."""
    _, s, vt = np.linalg.svd(number_reads, full_matrices=False)
    if not len(s) or s[0] == 0 or (len(s) > 1 and s[1] > 1e-6 * s[0]):
        return None
    slope = s[0] * vt[0]
    return np.where(np.abs(slope) > 1e-6 * np.abs(slope).max(), slope, 0.0), intercept


def _around_thresholds(line: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """Hidden activations [K, U] on each side of every threshold of the units
    on `line` (slope, intercept), a unit of slope 0 keeping its intercept."""
    if line is None:
        return None
    slope, intercept = line
    moving = slope != 0
    if not moving.any():
        return None
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


def _width_steps(
    intercepts: np.ndarray, x: float, max_seq_len: int, tol: float
) -> tuple[float, np.ndarray] | None:
    """(slope L, the step units) of a SelectorWidth's discretising MLP read
    at a constant head output `x`, from its candidate units' pre-activations
    `intercepts` [U] there; None where they are not such an MLP's.

    tracr discretises x over its values 1/(w+1), w = 0..max_seq_len: at
    each threshold t_k between neighbouring values a pair of units reads
    L (x - t_k) + 1 and L (x - t_k), and a start unit reads 1. So the pairs'
    lower pre-activations are L (x - t_k), the largest at the smallest t_k,
    and one L must fit them all (checked to `tol`)."""
    values = np.sort(1.0 / (np.arange(max_seq_len + 1) + 1.0))
    thresholds = (values[1:] + values[:-1]) / 2
    differ_by_one = np.abs(intercepts[None, :] - intercepts[:, None] - 1.0) <= tol
    lower = np.flatnonzero(differ_by_one.any(axis=1))
    upper = np.flatnonzero(differ_by_one.any(axis=0))
    if len(lower) != len(thresholds) or len(upper) != len(thresholds):
        return None
    lower = lower[np.argsort(-intercepts[lower])]
    gaps = x - thresholds  # descending, as the lower intercepts are for L > 0
    slope = float(intercepts[lower] @ gaps / (gaps @ gaps))
    if slope <= 0 or np.abs(slope * gaps - intercepts[lower]).max() > tol:
        return None
    return slope, np.union1d(lower, upper)


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
    groups: list[list[int]], hidden: np.ndarray, rows: np.ndarray, tol: float, number_reads: np.ndarray
) -> tuple[list[list[int]], int]:
    """(`groups` with each discretising MLP's parts joined, how many of them,
    at the end, took a start that could have gone to another).

    tracr's numerical-to-categorical MLP writes its first value from a
    `start` unit that reads only `one` and each step to the next value from a
    pair of units writing the step's difference with opposite signs:
    independent rows, so the matroid splits them, though together they are
    one SOp. A step's units read the one number their MLP discretises
    (`number_reads` [n, U], the reads without `one`, BOS and PAD), which ties
    steps together. Nothing in the weights tells which start is whose when a
    layer has several (two SelectorWidths): every start reads `one` alone.
    Any pairing writes the same states, and a wrong one shifts each SOp's
    directions by what it takes from the other's, which the reads' gauge
    undoes (`_Lifting.pairings`). A start goes first to a discretiser that
    writes nothing at some position (`hidden` [N, U], non-BOS positions) and
    so lacks its first value; a discretiser that always writes needs none
    (under a projection, a start whose value no state holds writes nothing).
    """
    number_scale = max(np.abs(number_reads).max(initial=0.0), 1e-30)

    def number_of(unit: int) -> np.ndarray | None:
        read = number_reads[:, unit]
        if np.abs(read).max() <= ZERO * number_scale:
            return None
        read = read / _norms(read)
        return read * np.sign(read[np.argmax(np.abs(read))])

    def by_number(items: list[tuple[np.ndarray | None, list[int]]], nones_together: bool) -> list:
        """(number, units) clusters of `items`, those of one number joined."""
        clusters: list[tuple[np.ndarray | None, list[int]]] = []
        for key, units in items:
            for number, members in clusters:
                if (key is None and number is None and nones_together) or (
                    key is not None and number is not None and _norms(key - number) <= 1e-4
                ):
                    members.extend(units)
                    break
            else:
                clusters.append((key, list(units)))
        return clusters

    def has_steps(units: list[int]) -> bool:
        return _has_steps(_unit_lines(rows[units], tol)[1])

    # A projection can make one SOp's values sum to another's, which joins
    # their matroid components: the steps of a categorical output (several
    # lines) that read different numbers, and starts (which read none), are
    # parts of different MLPs. (A numerical SequenceMap's units read two
    # numbers and write one line.)
    split: list[list[int]] = []
    for g in groups:
        edges, scale = _unit_lines(rows[g], tol)
        if len(edges) < 2 or not _has_steps(scale):
            split.append(g)
            continue
        parts = by_number([(number_of(u), [u]) for u in g], nones_together=True)
        # Only steps and starts come apart: a Map's or SequenceMap's units
        # each read their own values, and stay together.
        reading = [units for key, units in parts if key is not None]
        stepping = [has_steps(units) for units in reading]
        others = [u for units, steps in zip(reading, stepping) if not steps for u in units]
        split.extend(units for units, steps in zip(reading, stepping) if steps)
        # Units that read no number are constant: starts, and the steps of a
        # SelectorWidth whose number the projection made `one` (a constant
        # width); each of them writes its own independent rows.
        constant = next((units for key, units in parts if key is None), [])
        split.extend([constant[i] for i in c] for c in _matroid_components(rows[constant], tol, None))
        if others:
            split.append(sorted(others))
    groups = split
    stepped = [g for g in groups if has_steps(g)]
    starts = [
        g
        for g in groups
        if g not in stepped
        and np.abs(number_reads[:, g]).max() <= ZERO * number_scale
        and np.abs(hidden[:, g]).max() > 0
    ]
    if not stepped:
        return groups, 0
    steps = [
        units
        for _, units in by_number(
            [(number_of(g[np.argmax(_norms(number_reads[:, g].T))]), g) for g in stepped],
            nones_together=False,
        )
    ]
    size = np.abs(hidden).max(initial=0.0)
    lacking = [
        k for k, units in enumerate(steps) if (np.abs(hidden[:, units]).max(axis=1) <= ZERO * size).any()
    ]
    order = lacking + [k for k in range(len(steps)) if k not in lacking]
    joined = [sorted(start + steps[k]) for start, k in zip(starts, order)]
    taken = {u for g in joined for u in g}
    rest = [g for g in groups if g not in stepped and not taken & set(g)]
    rest += [steps[k] for k in order[len(starts) :]]
    return rest + joined, len(joined) if len(joined) > 1 else 0


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
        # Linear relations (rows, coefficients) the codes obey: the coefficients
        # times the rows' codes sum to 0 at every visited position.
        self.relations: list[tuple[tuple[int, ...], tuple[float, ...]]] = []
        # Relations of values only, not of directions: see `_pair`.
        self.pairings: list[tuple[tuple[int, ...], tuple[float, ...]]] = []
        self.layers: list[dict] = []
        # `_dependencies` for the directions and codes as they were at each
        # count of changes to them: reads ask for it many times between writes.
        self._changes = 0
        self._dependencies_at: tuple[int, np.ndarray] | None = None
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
        self._changes += 1
        return len(self.dirs) - 1

    def _next_writer(self) -> int:
        """The id the next head or MLP group writes under."""
        return max(self.writer) + 1

    def _states(self, stage: int) -> np.ndarray:
        """The residual before sublayer `stage`, one row per visited position."""
        return np.concatenate([s[stage].reshape(-1, s.shape[-1]) for _, s in self.batches]).astype(np.float64)

    def _relate(self, group: list[int]) -> float | None:
        """Record how a categorical group's values sum, if they sum to `one`
        at every position but BOS (where tracr leaves 0, or -1 where two
        SelectorWidths share their cleaner). Returns how far the directions
        miss that sum, relative to the length it would have were they
        independent; None where the values do not sum so (or there are none)."""
        if not group:
            return None
        total = np.sum([self.codes[d] for d in group], axis=0)
        one, bos = self.codes[self.one], self.codes[self.bos]
        at_bos = np.unique(np.round(total[bos > 0.5] / CODE_TOL) * CODE_TOL)
        if len(at_bos) > 1:
            return None
        k = 1.0 - (at_bos[0] if len(at_bos) else 0.0)  # total + k * bos = one
        if np.abs(total + k * bos - one).max() > CODE_TOL:
            return None
        rows, coefs = tuple(group) + (self.one,), (1.0,) * len(group) + (-1.0,)
        if abs(k) > CODE_TOL:  # (the tokens hold BOS themselves)
            rows, coefs = rows + (self.bos,), coefs + (k,)
        # In a full-rank basis every read of a categorical value is already
        # tracr's: only where the directions obey the relation too, or the
        # residual is a projection (reads known only up to the relations its
        # states obey), is a read free along it. "Obey": the combination is
        # small beside the length it would have were the directions
        # independent (about 1 in a full-rank basis; rounding under a
        # projection; the interference under a learned compression).
        lhs = np.sum([c * self.dirs[d] for d, c in zip(rows, coefs)], axis=0)
        violation = _norms(lhs) / np.sqrt(sum(c * c * _norms(self.dirs[d]) ** 2 for d, c in zip(rows, coefs)))
        if self.projected or violation <= DEPENDENT:
            self.relations.append((rows, coefs))
        return float(violation)

    def _sop_covers(self, group: list[int]) -> list[list[tuple[int, ...]]]:
        """The ways to split the held directions of Maps' groups into SOps:
        sets of values held one at a time, together at every position but
        BOS (`exact_covers` of the visited patterns). Each such set sums to
        `one` but at BOS, whichever split is tracr's: `_relate` takes them all.
        A copy of a line (`_line_per_sop`) may instead be a numerical Map's
        output, alone: a projection puts it on one line with the categorical
        value always held with it (`not indices` beside `indices - 2`, both
        set at index 0 alone). Only the splits leaving the fewest out are
        kept, each numerical SOp a set of one."""
        held = [d for d in group if np.abs(self.codes[d][self.not_bos]).max(initial=0.0) > 0.5]
        if len(held) < 2:
            return []
        patterns = np.unique(np.round(np.stack([self.codes[d][self.not_bos] for d in held])), axis=1)
        if not np.isin(patterns, (0.0, 1.0)).all():
            return []
        fires = {d: frozenset(np.flatnonzero(row).tolist()) for d, row in zip(held, patterns)}
        copies = {d for d in held if any(e != d and np.array_equal(self.dirs[d], self.dirs[e]) for e in held)}
        # Positions where none is held are positions where the SOps' inputs
        # hold none (an Aggregate's default, None): every split leaves them.
        # There a value held at every other position is no SOp of its own: it
        # says only that the input holds a value, as every SOp's values sum
        # to, and a writer of its own would let its reads move onto them.
        live = frozenset(np.flatnonzero(patterns.any(axis=0)).tolist())
        least = 1 if len(live) == patterns.shape[1] else 2
        covers = exact_covers(fires, live, copies, least=least)
        fewest = min((len(numerical) for _, numerical in covers), default=0)
        return [
            [tuple(sorted(sop)) for sop in sops] + [(d,) for d in numerical]
            for sops, numerical in covers
            if len(numerical) == fewest
        ]

    def _writer_per_sop(self, sops: list[tuple[int, ...]]) -> None:
        """Give each of an MLP's SOps (a split of `_sop_covers`) a writer of
        its own, where `_line_per_sop` copied lines. The copies of a line for
        two values always held together are one direction with one code, and
        a read is free along their difference: writers of their own let each
        reader take its own SOp's copy (`_fewest_writers`). Splits that differ
        only in which copy is whose are one relabelling."""
        for sop in sops:
            writer = self._next_writer()
            for d in sop:
                self.writer[d] = writer

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
        self.projected = False
        self._relate([self.tokens[t] for t in live])
        violation = self._relate(self.indices)
        # The indices sum to what the tokens sum to only under a projection
        # onto the visited states (the tokens' relation holds by construction).
        self.projected = len(self.relations) > 1
        # How far they miss it there measures the interference: a learned
        # compression's W W^T is the identity on the visited states only as
        # far as training made it, and along what no state visits not at all.
        # Reads carry errors of that relative size, and dependencies among
        # directions hold to it.
        self.interference = violation if self.projected and violation is not None else 0.0
        self.zero = _zero_under(self.interference)

    # -- reads ----------------------------------------------------------------
    def reads(self, weights: np.ndarray, per_column: bool = False) -> np.ndarray:
        """`weights` [D, K] read from every direction so far [n, K], shifted
        along the relations to as many zero rows as possible (under a
        projection first to the fewest writers: `_fewest_writers`, over the
        whole matrix or `per_column`), and entries within the interference of
        what they read set to zero."""
        reads = np.stack(self.dirs) @ weights.astype(np.float64)
        reads[self.pad] = 0.0  # no state holds PAD: its read is free, and zero is tracr's
        # Interference is relative to what is read: each unit's column on its
        # own, a head's or the unembed's whole map at once (a column of it
        # that reads next to nothing, an output value the SOp never takes,
        # holds only the map's interference).
        scale = np.abs(reads).max(axis=0) if per_column else np.full(reads.shape[1], np.abs(reads).max())
        tol = np.maximum(_zero_of(reads), self.zero * scale)
        if self.projected:
            # There the sparsest read may not be tracr's.
            reads = self._fewest_writers(reads, tol, per_column)
        fewest = reads
        reads = self._sparsest_along(reads, self.relations + self.pairings, tol)
        if self.projected:
            # Sparser along the relations, but never reading a writer more.
            writer = np.array(self.writer)
            for k, t in enumerate(tol):
                if not set(writer[np.abs(reads[:, k]) > t]) <= set(writer[np.abs(fewest[:, k]) > t]) | {0}:
                    reads[:, k] = fewest[:, k]
        reads[np.abs(reads) <= tol] = 0.0
        return reads

    def _fewest_writers(self, reads: np.ndarray, tol: np.ndarray, per_column: bool) -> np.ndarray:
        """`reads` shifted along the directions' dependencies (`_dependencies`)
        to read the fewest writers besides `one`: in the whole matrix (a
        query, key, value or the unembed reads one SOp in every column), or
        in each column (`per_column`: an MLP's units read their own SOps).
        Exact: every set of at most MAX_READ_WRITERS writers is tried, the
        smallest first, with one least-squares fit for all columns; among the
        sets of the least size that fit, the one whose reads, made sparsest
        along the relations inside it, have the fewest nonzero entries. A
        projection smears tracr's reads along every dependency, two SOps one
        MLP writes that sum alike included, and a sparsest shift along one
        relation at a time does not undo that."""
        deps = self._dependencies()
        if not len(deps):
            return reads
        writer = np.array(self.writer)
        nonzero = np.abs(reads) > tol
        free = np.abs(deps).max(axis=0) > ZERO
        held = self._held()
        candidates = sorted((set(writer[free]) | set(writer[nonzero.any(axis=1)])) - {0})
        best = reads.copy()
        best_count = np.full(reads.shape[1], np.iinfo(np.int64).max)
        ties: dict[int, list[np.ndarray]] = {}
        done = np.zeros(reads.shape[1], dtype=bool)
        for size in range(MAX_READ_WRITERS + 1):
            for chosen in itertools.combinations(candidates, size):
                check_deadline(self.deadline)
                allowed = np.isin(writer, (0,) + chosen)
                shift, *_ = np.linalg.lstsq(deps[:, ~allowed].T, -reads[~allowed], rcond=None)
                moved = reads + deps.T @ shift
                moved[np.abs(moved) <= tol] = 0.0
                fits = ~done & ~(moved[~allowed] != 0).any(axis=0)
                if not fits.any() or (not per_column and not fits.all()):
                    continue
                moved = self._sparsest_inside(moved, allowed, deps, tol)
                count = (moved != 0).sum(axis=0)
                if not per_column:
                    # Ties go to the reading that leaves fewest held values of
                    # the SOps it reads unread: the two copies of a line held
                    # together (`_line_per_sop`) read alike, and a head's
                    # value reads its SOp whole.
                    read = writer[(moved != 0).any(axis=1)]
                    unread = int((np.isin(writer, read) & held & ~(moved != 0).any(axis=1)).sum())
                    count = np.full_like(count, count.sum() * len(writer) + unread)
                better = fits & (count < best_count)
                if per_column:
                    for k in np.flatnonzero(better):
                        ties[k] = [moved[:, k]]
                    for k in np.flatnonzero(fits & (count == best_count)):
                        ties[k].append(moved[:, k])
                best[:, better] = moved[:, better]
                best_count[better] = count[better]
            done |= best_count < np.iinfo(np.int64).max
            if done.all():
                break
        if per_column:
            # A unit's read ties where two SOps' values have one direction and
            # one code (values no state holds, of two SelectorWidths): it goes
            # to the SOps the other units read most, as one MLP reads one or two.
            readers = collections.Counter(
                w for k in range(best.shape[1]) for w in set(writer[best[:, k] != 0])
            )
            for k, options in ties.items():
                if len(options) > 1:
                    best[:, k] = max(
                        options, key=lambda column: sum(readers[w] for w in set(writer[column != 0]))
                    )
        return best

    def _sparsest_inside(
        self, reads: np.ndarray, allowed: np.ndarray, deps: np.ndarray, tol: np.ndarray
    ) -> np.ndarray:
        """`reads` shifted along the relations and the dependencies `deps`
        among `allowed` rows alone to as many zero entries as possible
        (`_sparsest_shift`): two SOps a column reads may sum alike."""
        inside = [
            (rows, coefs) for rows, coefs in self.relations + self.pairings if allowed[list(rows)].all()
        ]
        # Combinations of the dependencies that vanish outside `allowed`.
        # (Under a learned compression the dependencies hold, and vanish,
        # only to the interference.)
        combos = np.eye(len(deps))
        if (~allowed).any():
            _, s, vt = np.linalg.svd(deps[:, ~allowed].T, full_matrices=True)
            combos = vt[int((s > self.zero * max(s.max(initial=0.0), 1.0)).sum()) :]
        for vector in _echelon(combos @ deps, self.zero):
            rows = np.flatnonzero(np.abs(vector) > self.zero * np.abs(vector).max())
            inside.append((rows.tolist(), vector[rows]))
        reads = self._sparsest_along(reads, inside, tol)
        reads[np.abs(reads) <= tol] = 0.0
        return reads

    def _sparsest_along(self, reads: np.ndarray, relations: list, tol: np.ndarray) -> np.ndarray:
        """`reads` shifted along each of `relations` (rows, coefficients) in
        turn, twice, to as many zero entries as possible (`_sparsest_shift`)."""
        reads = reads.copy()
        for _ in range(2):
            for rows, coefs in relations:
                check_deadline(self.deadline)
                rows = list(rows)
                reads[rows] = _sparsest_shift(reads[rows], np.asarray(coefs, dtype=np.float64)[:, None], tol)
        return reads

    def _held(self) -> np.ndarray:
        """[n] bool: the directions some state may hold, all but PAD's and the
        zero directions of values no state holds (`_unreached_copies`)."""
        return np.array([d != self.pad and _norms(v) > 0 for d, v in enumerate(self.dirs)])

    def _dependencies(self) -> np.ndarray:
        """`_dependencies_now`, computed once per state of the directions and codes."""
        if self._dependencies_at is None or self._dependencies_at[0] != self._changes:
            self._dependencies_at = (self._changes, self._dependencies_now())
        return self._dependencies_at[1]

    def _dependencies_now(self) -> np.ndarray:
        """[k, n]: a basis of the combinations of the directions so far that
        vanish (relative size at most DEPENDENT, as in `_relate`) and that
        their values obey at every visited position. Under a projection these
        are what tracr's reads are known up to: its read differs from the
        lifted one by a combination orthogonal to every state the model
        visits at every stage, which projects to zero. (A relation the values
        obey only from some stage on, as a SOp's values sum to `one` but at
        BOS once it is written, keeps reads exact but is no such freedom:
        its directions do not obey it.)"""
        # PAD and the copies of values no state holds (`_unreached_copies`):
        # no state holds them, their reads are zero, and under a projection
        # their directions are zero themselves (normalised, they would swamp
        # every other dependency).
        held = np.flatnonzero(self._held())
        dirs = np.stack([self.dirs[d] for d in held])
        lengths = np.maximum(_norms(dirs), 1e-30)
        u, s, _ = np.linalg.svd(dirs / lengths[:, None], full_matrices=True)
        singular = np.zeros(len(dirs))
        singular[: len(s)] = s
        null = np.zeros((int((singular <= DEPENDENT).sum()), len(self.dirs)))
        null[:, held] = u[:, singular <= DEPENDENT].T / lengths[None, :]
        if not len(null):
            return null
        null /= _norms(null)[:, None]
        codes = np.stack([c if c.size else np.zeros(len(self.not_bos)) for c in self.codes])
        u, s, _ = np.linalg.svd(null @ codes, full_matrices=False)
        singular = np.zeros(len(null))
        singular[: len(s)] = s
        # Each value is whole within CODE_TOL, and under a learned compression
        # the directions obey their relations only to the interference: a
        # combination they obey misses zero by at most that at a position.
        return u[:, singular <= max(CODE_TOL, self.zero) * np.sqrt(codes.shape[1])].T @ null

    # -- writers --------------------------------------------------------------
    def _on_directions(self, rows: np.ndarray, group: list[int], where: str) -> np.ndarray:
        """Coefficients of `rows` [R, D] on the group's directions; raises if
        they leave the group's span."""
        basis = np.stack([self.dirs[d] for d in group])
        coef = rows @ np.linalg.pinv(basis)
        scale = max(np.abs(rows).max(initial=0.0), 1e-30)
        if np.abs(coef @ basis - rows).max(initial=0.0) > 10 * self.zero * scale:
            raise NotTracrStructured(f"{where} writes outside the directions of its values")
        return coef

    def _on_fewest_writers(
        self,
        rows: np.ndarray,
        known: list[int],
        group: list[int],
        where: str,
        together: list[int] | None = None,
    ) -> np.ndarray:
        """Coefficients of `rows` on `known + group`, using the group's own
        directions and as few earlier writers as express them (the latest
        first: a SelectorWidth's MLP also clears its head's output), then the
        writers `together`. Under a lossless projection a new SOp's values
        depend on `one` and BOS, and a least-norm spread over every known
        direction would rewrite them."""
        writers = list(dict.fromkeys(self.writer[d] for d in reversed(known)))
        for extra in [[]] + [[w] for w in writers] + ([together] if together else []):
            check_deadline(self.deadline)
            chosen = [d for d in known if self.writer[d] in extra] + group
            if not chosen:
                continue
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
        entry_first_writer = self._next_writer()
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
            writer = self._next_writer()
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
            self._changes += 1
            # Exact on every output the head can reach: those are the images.
            out = output_w @ np.linalg.pinv(np.stack([self.dirs[d] for d in group]))
            entry["dims"], entry["out"] = self._unreached_copies(entry["value"], images, group, out)
        for entry in heads:
            if entry["dims"]:
                self._relate(entry["dims"])
        self.layers.append({"heads": heads, "first_writer": entry_first_writer})

    def _unreached_copies(
        self, value: np.ndarray, images: np.ndarray, group: list[int], out: np.ndarray
    ) -> tuple[list[int], np.ndarray]:
        """A head's directions `group` and its writes on them `out` [k, g],
        with a direction for each value it reads whose image a projection
        lost: a value its output holds on no visited state (an Aggregate of
        the indices whose selector never picks the last ones). tracr copies
        every value it reads to one of its own; the copy gets a direction of
        its own, zero in the compressed residual and held by no state,
        written exactly from that value's read (the pseudo-inverse of the
        reads)."""
        if not self.projected:
            return group, out
        reads = np.flatnonzero(np.abs(value).max(axis=1) > _zero_of(value))
        image_tol = ZERO * np.abs(images).max() * np.sqrt(images.shape[1])
        lost = [k for k, r in enumerate(reads) if _norms(images[r]) <= image_tol]
        if not lost or len(lost) == len(reads):
            return group, out
        copies = np.linalg.pinv(value[reads])[:, lost]  # [k, lost]
        if np.abs(value[reads] @ copies - np.eye(len(reads))[:, lost]).max() > ZERO * np.sqrt(len(reads)):
            return group, out  # not one value at a time: left to the reader to refuse
        writer = self.writer[group[0]]
        extra = [self._add(np.zeros_like(self.dirs[0]), np.zeros(len(self.not_bos)), writer) for _ in lost]
        return group + extra, np.hstack([out, copies])

    def lift_mlp(self, index: int, layer: LayerWeights) -> None:
        where = f"MLP {index}"
        entry = self.layers[-1]
        entry["mlp_in"] = reads = self._constant_widths_read(
            self.reads(layer.mlp_in_w, per_column=True), entry["heads"]
        )
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
        span = vt[s > self.zero * s.max()]
        beyond = out_w - (out_w @ span.T) @ span
        tol = self.zero * scale * np.sqrt(out_w.shape[1])
        live = _norms(out_w) > tol
        # tracr's SelectorWidths share a unit that reads BOS alone and clears
        # their outputs there: it writes into every one of them, so it would
        # join them in one matroid component. It is lifted after them.
        read_tol = _zero_of(reads)
        reading = np.abs(reads) > read_tol
        cleaners = [u for u in np.flatnonzero(live) if set(np.flatnonzero(reading[:, u])) == {self.bos}]
        rest = [u for u in range(len(out_w)) if u not in cleaners]
        inside = [u for u in rest if live[u] and _norms(beyond[u]) <= tol]
        groups = [[rest[i] for i in g] for g in _matroid_components(beyond[rest], tol, self.deadline)]
        if inside:
            groups += [[inside[i] for i in g] for g in _matroid_components(out_w[inside], tol, self.deadline)]
        number_reads = reads.copy()
        number_reads[[self.one, self.bos, self.pad]] = 0.0
        groups, paired = _with_discretising_starts(groups, hidden[self.not_bos], out_w, tol, number_reads)
        lifted_groups, map_groups, copied = [], [], False
        for units in groups:
            check_deadline(self.deadline)
            edges, unit_scale = _unit_lines(out_w[units], tol)
            # Distinct writes are distinct counts of the edges (fewer columns).
            counts = shown_hidden[:, units] @ unit_scale
            shown = _distinct_rows(counts, _zero_of(counts)) @ edges
            wscale = max(np.abs(shown).max(initial=0.0), scale)
            reps = shown[_norms(shown) > ZERO * wscale * np.sqrt(shown.shape[1])]
            # Under a projection values of several Maps can share a line (`_line_per_sop`).
            per_sop = (
                None if _has_steps(unit_scale) else _line_per_sop(edges, unit_scale, shown_hidden[:, units])
            )
            shared = per_sop is not None and len(per_sop[0]) > len(edges)
            whole = False
            if not shared and len(edges) == 1 and np.all(np.abs(unit_scale[unit_scale != 0] - 1.0) <= 1e-4):
                # Every unit writes the same row: one value, whatever blends
                # the probes show (a SelectorWidth's near max_seq_len, read).
                reps = edges
                whole = True
            elif not shared and _on_one_line(reps, wscale):
                # All multiples of one vector: a numerical SOp, its largest value positive.
                reps = _numerical_direction(reps)
            elif len(edges) == 1 and _has_steps(unit_scale) and not self.projected:
                # Steps up and back on one line: no categorical SOp's (tracr's
                # discretiser writes its first value and each step to the next
                # on lines of their own, independent but under a projection,
                # which can lose all values but one), a numerical one the
                # probes show at one value besides 0 (a LinearSequenceMap of a
                # constant).
                reps = _numerical_direction(shown if _norms(shown).max(initial=0.0) > tol else edges)
            elif per_sop is not None:
                # A Map's or SequenceMap's units each write one value whole:
                # every line is a value, and each unit writes its scale of its
                # line, exactly. (Lines of several SOps share a group only
                # where a projection makes their values sum alike; what they
                # show together there is no value, and a least-norm expression
                # of the rows would spread over the dependent lines. Which
                # lines make which SOp the positions alone do not fix: two
                # Maps of one input can be relabelled into two other Maps.
                # Reads of one of them are told apart along the dependency
                # inside the group: `_sparsest_inside`.)
                edges, unit_scale = per_sop
                writer = self._next_writer()
                group = [self._add(edge, np.zeros(len(self.not_bos)), writer) for edge in edges]
                coef = np.hstack([np.zeros((len(units), len(known))), unit_scale])
                self._write(out, units, known, group, coef, hidden)
                copied |= shared
                lifted_groups.append(group)
                map_groups.append(group)
                continue
            else:
                line = _line_from_reads(
                    number_reads[:, units], reads[self.one, units] + layer.mlp_in_b[units]
                )
                values = _categorical_values(shown_pre[:, units], edges, unit_scale, tol, line)
                reps = _distinct_rows(values, ZERO * wscale)
            directions = list(reps)
            # Values no probe reached, the likeliest first. Each unit writes at
            # most one value, so more rounds than units means the guesses never
            # cover the rows (a guess can fall in the span already found).
            for _ in range(len(units) + 1):
                check_deadline(self.deadline)
                basis = np.array(self.dirs + directions)
                rows = out_w[units]
                missing = rows[_norms(rows - rows @ np.linalg.pinv(basis) @ basis) > tol]
                if not len(missing):
                    break
                directions.append(_unreached_value(missing, np.array(directions)))
            else:
                raise NotTracrStructured(f"{where} writes rows that no set of value directions covers")
            writer = self._next_writer()
            group = [self._add(d, np.zeros(len(self.not_bos)), writer) for d in directions]
            self._write(
                out, units, known, group, self._on_fewest_writers(out_w[units], known, group, where), hidden
            )
            lifted_groups.append(group)
            if whole:
                map_groups.append(group)
        if cleaners:
            known_now = list(range(len(self.dirs)))
            coef = self._cleaning(out_w[cleaners], hidden[:, cleaners], entry["first_writer"], tol)
            if coef is None:
                # It clears what this layer's heads and MLP wrote, nothing else.
                layer_writers = [w for w in dict.fromkeys(self.writer) if w >= entry["first_writer"]]
                coef = self._on_fewest_writers(out_w[cleaners], known_now, [], where, layer_writers)
            self._write(out, cleaners, known_now, [], coef, hidden)
        # Maps whose values a projection mixed across groups: split them again
        # by how their values are held.
        unrelated = []
        for group in lifted_groups:
            if self._relate(group) is None and group in map_groups:
                unrelated += group
        if unrelated:
            covers = self._sop_covers(unrelated)
            for sop in sorted({sop for sops in covers for sop in sops}):
                self._relate(list(sop))
            if covers and (copied or len(covers) == 1):
                self._writer_per_sop(covers[0])
        discretisers = lifted_groups[len(lifted_groups) - paired :] if paired else []
        for group in discretisers[1:]:
            self._pair(group, discretisers[0])
        self._check_relations()

    def _constant_widths_read(self, reads: np.ndarray, heads: list[dict]) -> np.ndarray:
        """`reads` [n, U] of an MLP with each SelectorWidth whose width the
        probes hold constant read back from its head. tracr's SelectorWidth
        head writes x = 1/(width+1) (it attends to BOS and reads BOS as its
        value) and its MLP discretises x (`_width_steps`). Where the width is
        constant, x is c times `one` on every state, the reads are free along
        that relation, and the sparsest read takes each unit's L x from `one`
        alone: an MLP reading nothing the reader can name."""
        tol = _zero_of(reads)
        nonzero = np.abs(reads) > tol
        from_one = np.flatnonzero(nonzero[self.one] & (nonzero.sum(axis=0) == 1))
        for entry in heads:
            if len(entry["dims"]) != 1:
                continue
            value_rows = np.flatnonzero(np.abs(entry["value"]).max(axis=1) > _zero_of(entry["value"]))
            if value_rows.tolist() != [self.bos]:
                continue
            (width_dir,) = entry["dims"]
            code = self.codes[width_dir]
            if nonzero[width_dir].any() or np.ptp(code) > CODE_TOL or not len(from_one):
                continue
            steps = _width_steps(reads[self.one, from_one], float(code[0]), self.model.spec.max_seq_len, tol)
            if steps is None:
                continue
            slope, units = steps
            columns = from_one[units]
            reads[width_dir, columns] = slope
            reads[self.one, columns] -= slope * code[0]
            from_one = np.setdiff1d(from_one, columns)
        return reads

    def _cleaning(
        self, rows: np.ndarray, active: np.ndarray, first_writer: int, tol: float
    ) -> np.ndarray | None:
        """Coefficients [C, n] of BOS cleaners' rows on this layer's directions,
        each a multiple of what the layer holds at BOS, tracr's reason for the
        cleaner; None where the rows are not. (tracr's SelectorWidths in one
        layer share the cleaner, which then fires once per SelectorWidth and
        clears each of them as often.) Under a projection the layer's
        directions can be dependent, and only this fixes which expression of
        the rows is meant."""
        firing = ~self.not_bos & (active > 0).any(axis=1)
        layer = [d for d in range(len(self.dirs)) if self.writer[d] >= first_writer]
        if not firing.any() or not layer:
            return None
        held = np.stack([self.codes[d][firing] for d in layer], axis=1)
        if np.ptp(held, axis=0).max() > CODE_TOL:
            return None
        target = held[0] @ np.stack([self.dirs[d] for d in layer])
        if _norms(target) <= tol:
            return None
        multiple = rows @ target / (target @ target)
        if np.abs(multiple[:, None] * target - rows).max() > tol:
            return None
        coef = np.zeros((len(rows), len(self.dirs)))
        coef[:, layer] = multiple[:, None] * held[0]
        return coef

    def _write(self, out: dict, units: list[int], known: list[int], group: list[int], coef, hidden) -> None:
        """Record units' writes `coef` [U, len(known + group)] and add what
        they write at every visited position to the directions' codes."""
        out[tuple(units)] = (known + group, coef)
        targets = known + group
        written = np.flatnonzero(np.abs(coef).max(axis=0) > 0)  # most groups touch few directions
        codes = hidden[:, units] @ coef[:, written]
        for k, column in zip(written, codes.T):
            self.codes[targets[k]] = self.codes[targets[k]] + column
        self._changes += 1

    def _pair(self, group: list[int], other: list[int]) -> None:
        """Record that two discretising groups' values are held together
        (each position holds one of each, BOS neither), so reads may shift
        along them: their starts could have been paired the other way.
        `_check_relations` forgets it where the codes do not obey it."""
        self.pairings.append((tuple(group) + tuple(other), (1.0,) * len(group) + (-1.0,) * len(other)))

    def _check_relations(self) -> None:
        """Forget relations a write into known dimensions broke."""
        codes = np.stack(self.codes)

        def holds(relation: tuple[tuple[int, ...], tuple[float, ...]]) -> bool:
            rows, coefs = relation
            return bool(np.abs(np.array(coefs) @ codes[list(rows)]).max() <= CODE_TOL)

        self.relations = [r for r in self.relations if holds(r)]
        self.pairings = [r for r in self.pairings if holds(r)]

    # -- the lifted model -----------------------------------------------------
    def lifted_model(self) -> Model:
        model, n = self.model, len(self.dirs)
        unembed = self.reads(model.unembed)
        # A numerical direction's scale and sign are a free choice, except that
        # tracr unembeds a numerical output with weight 1: rescale it so.
        scale = np.ones(n)
        if model.spec.numerical:
            embedded = (self.one, *self.tokens, *self.indices)
            read = np.flatnonzero(np.abs(unembed[:, 0]) > ZERO * np.abs(unembed).max(initial=1e-30))
            if len(read) == 1 and read[0] not in embedded:
                scale[read[0]] = 1.0 / unembed[read[0], 0]
            # A numerical Aggregate copies its SOp with weight 1 (its output
            # direction is the image of the one it reads), so along a chain of
            # them every SOp takes the output's scale; the table of a Map
            # writing the first is then in the output's units. (A rotation
            # keeps the norms that set the other scales, a mixing does not.)
            for entry in reversed(self.layers):
                for e in entry["heads"]:
                    if len(e["dims"]) != 1 or scale[e["dims"][0]] == 1.0:
                        continue
                    copied = np.flatnonzero(np.abs(e["value"]).max(axis=1) > _zero_of(e["value"]))
                    if len(copied) == 1 and copied[0] not in embedded:
                        scale[copied[0]] = scale[e["dims"][0]]

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


def _echelon(vectors: np.ndarray, zero: float) -> np.ndarray:
    """A basis of the rows' span in reduced row echelon form (pivots taken in
    column order, entries within `zero` of the largest taken as zero): a
    basis whose vectors read few directions each. An SVD's basis mixes
    disjoint dependencies (v1 = 2 as v17 = 4 plus v17 = 5, v1 = 3 as 6 plus
    7, of two Maps of one input), and shifts along one mixed vector at a time
    cannot undo any of them."""
    m = np.array(vectors, dtype=np.float64)
    if not m.size:
        return m
    tol = zero * np.abs(m).max()
    rank = 0
    for col in range(m.shape[1]):
        if rank == len(m):
            break
        pivot = rank + int(np.argmax(np.abs(m[rank:, col])))
        if abs(m[pivot, col]) <= tol:
            continue
        m[[rank, pivot]] = m[[pivot, rank]]
        m[rank] /= m[rank, col]
        others = np.arange(len(m)) != rank
        m[others] -= np.outer(m[others, col], m[rank])
        rank += 1
    return m[:rank]


def _sparsest_shift(block: np.ndarray, sign: np.ndarray, tol: float) -> np.ndarray:
    """`block` [R, K], the reads of a relation's rows, plus sign * m for the
    shift m [K] that leaves each column the most zero entries, then the least
    L1 (m = 0 on a tie). Columns are separate units or heads' dimensions, each
    free along the relation on its own: a `start` unit reads `one`, its
    neighbours read the tokens."""
    best = block.copy()
    best_key = np.full(block.shape[1], -np.inf)
    # Each candidate zeroes one row of the block, or keeps it (m = 0 first).
    candidates = np.vstack([np.zeros((1, block.shape[1])), -block / sign])
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
    out[np.abs(out) <= _zero_of(out)] = 0.0
    return out
