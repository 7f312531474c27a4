"""Component tables: what each component computes, read by probing it alone.

In: a `Model` and its `Structure`. Out: per component, its exact table over
residual dimensions, before any value is attached to a dimension:
- a sub-MLP: input combination -> output (a dimension of a categorical
  output, or a number); an input is a dimension of a categorical block or a
  value a numerical block takes on the probe inputs;
- a head: its selection predicate as a boolean table over (query dimension,
  key dimension), and for a categorical Aggregate which value dimension is
  copied to which output dimension;
- a SelectorWidth: its predicate, and the width each output dimension means
  (or, for a numerical width, a check that the output is the width).

Each probe builds exactly the residual vectors tracr's construction assumes:
`one` set, one dimension per categorical input, BOS as a key with only BOS
and `one` set.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from raspsynth.errors import NotTracrStructured
from raspsynth.symbolic.probing import (
    ResidualObservations,
    attention_score,
    counts_widths,
    mlp_response,
    residual_vectors,
    value_response,
    width_response,
)
from raspsynth.symbolic.residual_structure import Component, Structure
from raspsynth.tracr_bridge.model import Model

# A linear fit of a numerical MLP must be this exact to be a LinearSequenceMap.
LINEAR_TOLERANCE = 1e-3

Key = int | float | None  # a dimension, a numerical value, or None (input unread)


@dataclasses.dataclass(frozen=True)
class MlpTable:
    """`rows` maps a tuple of input keys (one per input block) to an output
    dimension (categorical output) or value (numerical output). Input
    combinations where a categorical MLP of several dimensions writes nothing
    are left out: the function returns None there, outside the value set."""

    rows: dict[tuple[Key, ...], int | float]
    coefficients: tuple[float, float] | None = None  # a LinearSequenceMap's
    # A Map of one numerical SOp, compiled by tracr as a discretising MLP: its
    # thresholds (ascending) and the output in each of the len + 1 regions
    # (a dimension, or a value), read from the weights for every input value
    # tracr's value-set inference had, observed or not.
    steps: tuple[tuple[float, ...], tuple[int | float, ...]] | None = None


@dataclasses.dataclass(frozen=True)
class AttentionTable:
    """`selects[(query_dim, key_dim)]`; `copies[value_dim] = output_dim` for a
    categorical Aggregate; `widths[output_dim] = width` for a SelectorWidth."""

    selects: dict[tuple[int | None, int | None], bool]
    copies: dict[int, int] | None = None
    widths: dict[int, int] | None = None

    @property
    def compared_dims(self) -> set[int]:
        """The query and key dimensions the predicate compares."""
        return {d for pair in self.selects for d in pair if d is not None}


def component_tables(model: Model, structure: Structure) -> dict[str, MlpTable | AttentionTable]:
    """Component name -> its table."""
    observations = _LazyObservations(model)
    tables: dict[str, MlpTable | AttentionTable] = {}
    for component in structure.components:
        if component.kind == "mlp":
            tables[component.name] = _mlp_table(model, structure, component, observations)
        else:
            tables[component.name] = _attention_table(model, structure, component)
    return tables


class _LazyObservations:
    """Runs the model on probe inputs only if a numerical input needs its values."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._observations: ResidualObservations | None = None

    def values(self, dim: int) -> tuple[float, ...]:
        if self._observations is None:
            self._observations = ResidualObservations(self.model)
        return self._observations.values(dim)


def _input_keys(structure: Structure, name: str, observations: ResidualObservations) -> list[tuple]:
    """(key, residual assignment) for each value an input block can hold."""
    block = structure.block(name)
    if block.encoding == "categorical":
        return [(d, {d: 1.0}) for d in structure.value_dims(name)]
    dim = block.dims[0]
    return [(v, {dim: v}) for v in observations.values(dim)]


def _one(structure: Structure) -> dict[int, float]:
    return {} if structure.one_dim is None else {structure.one_dim: 1.0}


def _mlp_table(model, structure: Structure, component: Component, observations) -> MlpTable:
    layer = model.layers[component.layer]
    out = structure.block(component.name)
    keys = [_input_keys(structure, name, observations) for name in component.inputs]
    combos = list(itertools.product(*keys))
    residual_rows = []
    for combo in combos:
        row = _one(structure)
        for _, assignment in combo:
            row.update(assignment)
        residual_rows.append(row)
    response = mlp_response(layer, residual_vectors(model.d_model, residual_rows))[:, list(out.dims)]
    rows: dict[tuple[Key, ...], int | float] = {}
    for combo, values in zip(combos, response):
        key = tuple(k for k, _ in combo)
        if out.encoding == "categorical":
            if len(out.dims) > 1 and values.max(initial=0.0) < 0.5:
                # Nothing written: the function is undefined here (tracr's None). A
                # one-dimension block is left as it was read: its 0 may be a number.
                continue
            rows[key] = out.dims[int(np.argmax(values))]
        else:
            rows[key] = float(values[0])
    coefficients = steps = None
    inputs = [structure.block(name) for name in component.inputs]
    if len(inputs) == 2 and all(b.encoding == "numerical" for b in inputs):
        coefficients = _linear_fit(rows, component.name)
    if len(inputs) == 1 and inputs[0].encoding == "numerical" and structure.one_dim is not None:
        steps = _discretised(layer, component, inputs[0].dims[0], structure.one_dim, out)
    return MlpTable(rows, coefficients, steps)


# tracr's discretising units come in pairs whose biases differ by exactly 1.
PAIR_TOLERANCE = 1e-3
# Fraction of a head's top score within which a key scores as high as BOS.
SCORE_TOLERANCE = 0.25


def _grid(weight: float, bias: float) -> tuple[int, int]:
    return round(weight / PAIR_TOLERANCE), round(bias / PAIR_TOLERANCE)


def _discretised(layer, component: Component, in_dim: int, one_dim: int, out) -> tuple | None:
    """The thresholds and region outputs of tracr's discretising MLP
    (`numerical_mlp._get_discretising_layer`), or None for other weights.

    Per threshold t, two units read x with weight L and `one` with biases
    1 - L·t and -L·t; their difference is 1 above t and 0 below, and the
    first writes Δ (the output's change at t), the second -Δ. A `start`
    unit reads only `one` and writes the output below every threshold. So
    the output in region r is start + Σ Δ over the r lowest thresholds."""
    units = list(component.hidden_units)
    weight = layer.mlp_in_w[in_dim, units].astype(np.float64)
    bias = (layer.mlp_in_w[one_dim, units] + layer.mlp_in_b[units]).astype(np.float64)
    out_w = layer.mlp_out_w[np.ix_(units, list(out.dims))].astype(np.float64)
    start = np.zeros(len(out.dims))
    steps, used = [], set()
    for i in range(len(units)):
        if weight[i] == 0:
            start += out_w[i] * max(bias[i], 0.0)
            used.add(i)
    # Units by (weight, bias) on a PAIR_TOLERANCE grid, to find each partner at once.
    by_key: dict[tuple[int, int], list[int]] = {}
    for j in range(len(units)):
        by_key.setdefault(_grid(weight[j], bias[j]), []).append(j)
    for i in np.argsort(-bias):  # the unit of a pair with the larger bias first
        if i in used or weight[i] <= 0:
            continue
        partner = next(
            (
                j
                for j in by_key.get(_grid(weight[i], bias[i] - 1), [])
                if j not in used and j != i and np.allclose(out_w[j], -out_w[i], atol=PAIR_TOLERANCE)
            ),
            None,
        )
        if partner is None:
            return None
        used |= {int(i), partner}
        steps.append((-bias[partner] / weight[i], out_w[i]))
    if len(used) != len(units) or not steps:
        return None
    steps.sort(key=lambda step: step[0])
    outputs, current = [], start
    for region in range(len(steps) + 1):
        if region:
            current = current + steps[region - 1][1]
        if out.encoding == "categorical":
            outputs.append(out.dims[int(np.argmax(current))])
        else:
            outputs.append(float(np.round(current[0], 6)))
    thresholds = tuple(float(np.round(t, 6)) for t, _ in steps)
    return thresholds, tuple(outputs)


def _linear_fit(rows: dict, name: str) -> tuple[float, float]:
    xy = np.array(list(rows), dtype=np.float64)
    z = np.array(list(rows.values()), dtype=np.float64)
    (a, b), *_ = np.linalg.lstsq(xy, z, rcond=None)
    a, b = float(np.round(a, 4)), float(np.round(b, 4))
    if np.abs(xy @ np.array([a, b]) - z).max(initial=0.0) > LINEAR_TOLERANCE:
        raise NotTracrStructured(f"{name} combines two numerical SOps non-linearly")
    return a, b


def _attention_table(model, structure: Structure, component: Component) -> AttentionTable:
    head = model.layers[component.layer].heads[component.head]
    query, key = component.inputs
    query_dims = list(structure.value_dims(query)) if query else [None]
    key_dims = list(structure.value_dims(key)) if key else [None]
    one = _one(structure)
    queries = residual_vectors(
        model.d_model, [{**one, **({} if q is None else {q: 1.0})} for q in query_dims]
    )
    keys = residual_vectors(
        model.d_model,
        [{**one, **({} if k is None else {k: 1.0})} for k in key_dims] + [{**one, structure.bos_dim: 1.0}],
    )
    scores = attention_score(head, queries, keys)
    # tracr scores BOS half as high as a selected key (as high, when the head
    # always attends to BOS, as SelectorWidth's does) and an unselected one at
    # 0: the wrong side of BOS is at least a quarter of the top score away,
    # however far interference moves the scores below that.
    tolerance = SCORE_TOLERANCE * max(1.0, float(np.abs(scores).max()))
    selected = scores[:, :-1] >= scores[:, -1:] - tolerance
    selects = {(q, k): bool(selected[i, j]) for i, q in enumerate(query_dims) for j, k in enumerate(key_dims)}
    out = structure.block(component.name)
    if component.kind == "aggregate":
        value = structure.block(component.value)
        if value.encoding == "numerical":
            return AttentionTable(selects)
        dims = structure.value_dims(component.value)
        written = value_response(head, residual_vectors(model.d_model, [{d: 1.0} for d in dims]))
        copies = {}
        for d, whole_row in zip(dims, written):
            row = whole_row[list(out.dims)]
            if np.abs(whole_row).max() <= 1e-3:
                # Copied nowhere: a value no state holds, whose copy a
                # projection dropped with it (an Aggregate of an Aggregate
                # that copies the first one's unreached values).
                continue
            if not np.isclose(row.max(), 1.0, atol=1e-3) or np.abs(row).sum() > 1.0 + 1e-3:
                raise NotTracrStructured(f"{component.name} does not copy value dimension {d} one-to-one")
            copies[d] = out.dims[int(np.argmax(row))]
        return AttentionTable(selects, copies=copies)
    return AttentionTable(selects, widths=_widths(model, structure, component))


def _widths(model, structure: Structure, component: Component) -> dict[int, int]:
    """Probe the SelectorWidth's MLP with the head's output 1/(w+1) for each width w."""
    layer = model.layers[component.layer]
    out = structure.block(component.name)
    max_width = model.spec.max_seq_len
    response = width_response(layer, model.d_model, structure.one_dim, component.attention_dim, max_width)[
        :, list(out.dims)
    ]
    if out.encoding == "numerical":
        if not counts_widths(response[:, 0]):
            raise NotTracrStructured(f"{component.name} does not output the selector's width")
        return {}
    widths = {}
    for w, row in enumerate(response):
        if row.max() < 0.5:
            # Nothing written for this width: its value's direction is not in
            # this residual (a projection drops a width no input reaches, such
            # as 0 under a Select that is always true).
            continue
        widths.setdefault(out.dims[int(np.argmax(row))], w)
    unreached = set(out.dims) - widths.keys()
    if unreached:
        # With long sequences 1/(w+1) and 1/(w+2) lie closer than tracr's
        # discretising MLP resolves, so the exact inputs of the widest
        # selectors blur into their neighbours' dimensions. A dimension no
        # exact width reaches fires for smaller inputs: give the unused widths,
        # in order, to the dimensions that fire going down from 1/(max+1).
        below = [
            {**_one(structure), component.attention_dim: x} for x in np.linspace(1 / (max_width + 1), 0, 64)
        ]
        order = []
        for row in mlp_response(layer, residual_vectors(model.d_model, below))[:, list(out.dims)]:
            d = out.dims[int(np.argmax(row))]
            if d in unreached and d not in order:
                order.append(d)
        unused = [w for w in range(max_width + 1) if w not in widths.values()]
        if len(order) != len(unreached) or len(unused) < len(order):
            raise NotTracrStructured(f"{component.name}: output dimensions that no width reaches")
        widths.update(zip(order, unused))
    return widths
