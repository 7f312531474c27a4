"""Block encoding: a model's weights as a sequence of recovered operations.

In: a `Model`. Out: `EncodedBlocks`: one feature row per value the program
can refer to, in reference order (row 0 `tokens`, row 1 `indices`, then one
row per component the symbolic layer reads off the weights, in layer order:
row r is what the program tokens call REF_r), or None when the weights
cannot be read as tracr-structured (a rotated residual, say).

Why per recovered block rather than per residual dimension: the residual's
dimensions are an unordered set whose meaning lies in how the embeddings,
heads and MLPs use them together. The symbolic layer already turns them into
blocks and components by probing (`decompile_structure`), which is exact and
invariant to any permutation of the residual by construction: the rows do
not depend on the residual's order, so neither can the meta-model's output.
What is left to learn is which program the reading most likely is: each
component's operation, operands, library function and comparison, ranked,
with the priors of the training distribution where the reading is ambiguous
(several library functions or comparisons fit the observed values alike, an
operand the weights never read). Layers are ordered, so rows are too.

Per row (FEATURES values):
- what it is: tokens, indices or the kind the reading gives the component
  (map, sequence map, linear sequence map, aggregate, selector width), its
  block's encoding, its layer, its own reference number, whether the
  unembedding reads it, its number of values and whether they are booleans;
- its operands, per slot (first and second MLP input, query, key, value):
  the operand's reference number, or "unread";
- how well each candidate fits the component's probed table in the
  reading's values (the fraction of entries it reproduces, and whether that
  is all of them): every library function of arity 1 (and of arity 2, with
  the operands in order and swapped), every comparison, and a linear
  sequence map's two coefficients (as COEF tokens and as numbers).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from raspsynth.neural.program_tokens import COEFFICIENT_TOKENS, MAX_OPS, OP_KINDS, coefficient_token
from raspsynth.program.ir import PREDICATES, SOURCES, library_predicates
from raspsynth.symbolic.component_tables import MlpTable
from raspsynth.symbolic.decompile import Decompiled, decompile_structure, library_fit, mlp_value_rows
from raspsynth.symbolic.residual_structure import Component
from raspsynth.symbolic.value_semantics import comparison_fit, library_functions, predicate_fit
from raspsynth.tracr_bridge.model import Model

MAX_REFS = MAX_OPS + len(SOURCES)
MAX_LAYERS = 16
ROW_KINDS = SOURCES + OP_KINDS
OPERAND_SLOTS = ("first", "second", "query", "key", "value")
_N_FN1, _N_FN2 = len(library_functions(1)), len(library_functions(2))
_N_COEF = len(COEFFICIENT_TOKENS)
_N_PREDICATES = len(library_predicates())

_LAYOUT = {
    "kind": len(ROW_KINDS),
    "encoding": 2,
    "layer": MAX_LAYERS,
    "rank": MAX_REFS,
    "output": 1,
    "values": 2,  # log1p(number of values), booleans
    "operands": len(OPERAND_SLOTS) * (MAX_REFS + 1),
    "fn1": _N_FN1,
    "fn2": _N_FN2,
    "fn2_swapped": _N_FN2,
    "comparison": len(PREDICATES),
    "predicate": _N_PREDICATES,
    # The same fits, 1 where exact: a near fit is as wrong as a poor one.
    "fn1_exact": _N_FN1,
    "fn2_exact": _N_FN2,
    "fn2_swapped_exact": _N_FN2,
    "comparison_exact": len(PREDICATES),
    "predicate_exact": _N_PREDICATES,
    "coefficients": 2 * _N_COEF + 2,
}
FEATURES = sum(_LAYOUT.values())
FIELD_NAMES = tuple(_LAYOUT)  # the named fields of a row, in order (`columns(name)` gives each one's range)
_OFFSET = dict(zip(_LAYOUT, np.cumsum([0, *_LAYOUT.values()])[:-1].tolist()))


@dataclasses.dataclass(frozen=True)
class EncodedBlocks:
    """`features[r]` describes REF_r; `kinds[r]` is the reading's op kind for
    r >= 2; `decompiled` is the reading itself (for targets and the search)."""

    features: np.ndarray  # [2 + ops, FEATURES] float32
    kinds: tuple[str, ...]
    decompiled: Decompiled

    @property
    def ops(self) -> int:
        return len(self.kinds) - len(SOURCES)


def encode_blocks(model: Model, decompiled: Decompiled | None = None) -> EncodedBlocks | None:
    """The rows of `model`'s reading; None when unreadable or longer than MAX_OPS ops.
    Pass `decompiled` when the reading exists already."""
    decompiled = decompiled if decompiled is not None else decompile_structure(model)
    if not decompiled.recognised:
        return None
    structure = decompiled.structure
    components = structure.components
    if len(components) > MAX_OPS:
        return None
    rank = {name: i for i, name in enumerate(SOURCES)}
    rank |= {c.name: i + len(SOURCES) for i, c in enumerate(components)}
    reading_kind = {
        decompiled.components[op.name]: op.kind for op in decompiled.program.ops if op.kind != "select"
    }
    kinds = SOURCES + tuple(reading_kind[c.name] for c in components)
    rows = np.zeros((len(rank), FEATURES), dtype=np.float32)
    for name, r in rank.items():
        row = rows[r]
        kind = kinds[r]
        block = structure.block(name)
        _set(row, "kind", ROW_KINDS.index(kind))
        _set(row, "encoding", int(block.encoding == "numerical"))
        _set(row, "rank", r)
        field(row, "output")[0] = float(name == structure.output)
        if r < len(SOURCES):
            n_values = len(structure.value_dims(name))
            field(row, "values")[0] = np.log1p(n_values)
            continue
        component = structure.component(name)
        _set(row, "layer", min(component.layer, MAX_LAYERS - 1))
        _operands(row, component, rank)
        if component.kind == "mlp":
            _mlp_fit(row, decompiled.model or model, decompiled, component)
        else:
            table = decompiled.tables[name]
            fit = comparison_fit(table.selects, decompiled.values.values)
            field(row, "comparison")[:] = list(fit.values())
            field(row, "predicate")[:] = predicate_fit(table.selects, decompiled.values.values)
        if block.encoding == "categorical":
            values = [decompiled.values.values[d] for d in block.dims]
            field(row, "values")[:] = np.log1p(len(values)), float(all(isinstance(v, bool) for v in values))
    for name in ("fn1", "fn2", "fn2_swapped", "comparison", "predicate"):
        field(rows, f"{name}_exact")[:] = field(rows, name) == 1.0
    return EncodedBlocks(rows, kinds, decompiled)


def field(rows: np.ndarray, name: str) -> np.ndarray:
    """The columns of `rows` (one row or many) holding the feature `name`, as a view."""
    span = columns(name)
    return rows[..., span.start : span.stop]


def columns(name: str) -> range:
    """The feature columns holding `name`."""
    return range(_OFFSET[name], _OFFSET[name] + _LAYOUT[name])


def _set(row: np.ndarray, name: str, index: int) -> None:
    field(row, name)[index] = 1.0


def _operands(row: np.ndarray, component: Component, rank: dict[str, int]) -> None:
    if component.kind == "mlp":
        slots = dict(zip(("first", "second"), component.inputs))
        if not component.inputs:
            slots["first"] = None
    else:
        slots = dict(zip(("query", "key"), component.inputs))
        if component.kind == "aggregate":
            slots["value"] = component.value
    for slot, operand in slots.items():
        index = rank.get(operand, MAX_REFS) if operand is not None else MAX_REFS  # MAX_REFS: unread
        field(row, "operands")[OPERAND_SLOTS.index(slot) * (MAX_REFS + 1) + index] = 1.0


def _mlp_fit(row: np.ndarray, model: Model, decompiled: Decompiled, component: Component) -> None:
    table: MlpTable = decompiled.tables[component.name]
    if table.coefficients is not None:
        coefficients = field(row, "coefficients")  # two one-hot COEF tokens, then the two numbers
        for i, c in enumerate(table.coefficients):
            coefficients[i * _N_COEF + COEFFICIENT_TOKENS.index(coefficient_token(c))] = 1.0
            coefficients[2 * _N_COEF + i] = np.tanh(c / 4)
        return
    structure, tables, values = decompiled.structure, decompiled.tables, decompiled.values
    _, rows = mlp_value_rows(model, structure, tables, values, component)
    numerical = structure.block(component.name).encoding == "numerical"
    if len(next(iter(rows))) == 1:
        field(row, "fn1")[:] = library_fit(rows, numerical)
    else:
        field(row, "fn2")[:] = library_fit(rows, numerical)
        field(row, "fn2_swapped")[:] = library_fit(rows, numerical, (1, 0))
