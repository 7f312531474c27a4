"""`decompile_structure`: a program IR read straight off a model's weights.

In: a `Model`. Out: `Decompiled`: a program (or None when the weights are not
tracr-structured, with the reason), a confidence per op, and how each op was
found. It chains the symbolic layer's stages: residual structure ->
component tables -> value semantics -> ops, after basis recovery
(`symbolic.basis`) when the residual is not tracr's up to a permutation
(rotated, mixed, compressed). Functions are named by the
library when one matches their table exactly; otherwise they stay exact
tables (the expression search can still give them a readable lambda).

Confidence is 1.0 for an op whose every part was read from the weights,
and 0.5 where an operand the weights never read was filled in (a constant
predicate or function, which cannot depend on it). A predicate that no tracr
comparison reproduces under the chosen values is a custom one: a library
predicate (`q == k + 1`) where one fits, else its exact table. A Map of a
numerical SOp that no library function fits on the observed values is read
as the step function tracr's discretising MLP computes (`Fn.from_steps`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

from raspsynth.errors import BudgetSpent, NotTracrStructured, check_deadline
from raspsynth.program.canonical import apply_ignoring_errors
from raspsynth.program.ir import Fn, Op, Program, ProgramError
from raspsynth.symbolic.basis import lift
from raspsynth.symbolic.component_tables import AttentionTable, MlpTable, component_tables
from raspsynth.symbolic.residual_structure import Component, Structure, read_structure
from raspsynth.symbolic.value_semantics import (
    SOLVER_TIMEOUT_MS,
    ValueAssignment,
    assign_values,
    comparison_of,
    library_functions,
    predicate_of,
)
from raspsynth.tracr_bridge.model import Model
from raspsynth.tracr_bridge.outputs import values_equal


@dataclasses.dataclass(frozen=True)
class Decompiled:
    """What the weights say. `program` is None when they are not recognisable
    as tracr-structured; `reason` then says why."""

    program: Program | None
    confidence: dict[str, float]
    provenance: dict[str, str]
    structure: Structure | None = None
    tables: dict | None = None
    values: ValueAssignment | None = None
    reason: str | None = None
    # op name -> the component (and block) that computes it; a Select maps to its head.
    components: dict[str, str] = dataclasses.field(default_factory=dict)
    # The model whose residual dimensions `structure` names: the target, or
    # the target in its recovered basis (`symbolic.basis`) when it was not tracr's.
    model: Model | None = None

    @property
    def recognised(self) -> bool:
        return self.program is not None


def decompile_structure(
    model: Model, solver_timeout_ms: int | None = SOLVER_TIMEOUT_MS, deadline: float | None = None
) -> Decompiled:
    """The program the weights encode, as far as the weights alone tell it.
    `solver_timeout_ms` bounds Z3's joint relabelling of values; None skips it.
    At `deadline` (time.monotonic()) the reading stops with no program."""
    try:
        model, structure = _read_in_any_basis(model, deadline)
        check_deadline(deadline)
        tables = component_tables(model, structure)
        check_deadline(deadline)
        values = assign_values(model, structure, tables, solver_timeout_ms, deadline)
        check_deadline(deadline)
        builder = _ProgramBuilder(model, structure, tables, values)
        program = builder.build()
    except BudgetSpent:
        return Decompiled(None, {}, {}, reason="the budget ran out while reading the weights")
    except NotTracrStructured as err:
        return Decompiled(None, {}, {}, reason=f"not recognisable as tracr-structured: {err}")
    except ProgramError as err:
        return Decompiled(None, {}, {}, reason=f"the weights read as an invalid program: {err}")
    return Decompiled(
        program,
        builder.confidence,
        builder.provenance,
        structure,
        tables,
        values,
        components=builder.components,
        model=model,
    )


def _read_in_any_basis(model: Model, deadline: float | None) -> tuple[Model, Structure]:
    """(the model the structure indexes, its structure): the model itself when
    its residual is tracr's up to a permutation, else its recovered basis."""
    try:
        return model, read_structure(model)
    except NotTracrStructured as as_given:
        try:
            lifted = lift(model, deadline=deadline)
            return lifted.model, read_structure(lifted.model, lifted.bit_tolerance)
        except NotTracrStructured as lifted_error:
            raise NotTracrStructured(f"{as_given}; in a recovered basis: {lifted_error}") from None


def match_library(rows: dict[tuple, Hashable], numerical: bool) -> Fn | None:
    """The first library function equal to `rows` (args -> result) everywhere."""
    arity = len(next(iter(rows)))
    for fn in library_functions(arity):
        f = fn.bind()
        if all(_fits(apply_ignoring_errors(f, *args), result, numerical) for args, result in rows.items()):
            return fn
    return None


def mlp_value_rows(
    model: Model, structure: Structure, tables: dict, values: ValueAssignment, component: Component
) -> tuple[tuple[str, ...], dict[tuple, Hashable]]:
    """A sub-MLP's table in values: (its input blocks, {argument values: result}).
    An MLP that reads nothing is a constant; it is given `tokens` as input."""
    table: MlpTable = tables[component.name]
    numerical = structure.block(component.name).encoding == "numerical"

    def value(name: str, key) -> Hashable:
        return _plain(key) if structure.block(name).encoding == "numerical" else values.values[key]

    rows = {
        tuple(value(i, k) for i, k in zip(component.inputs, key)): _plain(out)
        if numerical
        else values.values[out]
        for key, out in table.rows.items()
    }
    if component.inputs:
        return component.inputs, rows
    (constant,) = rows.values()
    return ("tokens",), {(t,): constant for t in model.spec.vocab}


def library_fit(
    rows: dict[tuple, Hashable], numerical: bool, order: tuple[int, ...] | None = None
) -> list[float]:
    """Per library function of the rows' arity (in `library_functions` order),
    the fraction of `rows` it reproduces; `order` permutes each row's arguments
    first (`(1, 0)`: the function applied to the arguments swapped)."""
    arity = len(next(iter(rows)))
    order = order or tuple(range(arity))
    fits = []
    for fn in library_functions(arity):
        f = fn.bind()
        agree = sum(
            _fits(apply_ignoring_errors(f, *(args[i] for i in order)), result, numerical)
            for args, result in rows.items()
        )
        fits.append(agree / len(rows))
    return fits


def _fits(got, want, numerical: bool) -> bool:
    # A function undefined on an argument (None) does not fit it.
    return got is not None and values_equal(got, want, numerical)


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class _ProgramBuilder:
    def __init__(self, model: Model, structure: Structure, tables: dict, values: ValueAssignment) -> None:
        self.model, self.structure, self.tables, self.values = model, structure, tables, values
        self.names = {"tokens": "tokens", "indices": "indices"}
        self.ops: list[Op] = []
        self.confidence: dict[str, float] = {}
        self.provenance: dict[str, str] = {}
        self.components: dict[str, str] = {}

    def build(self) -> Program:
        for component in self.structure.components:
            if component.kind == "mlp":
                self._mlp(component)
            else:
                self._attention(component)
        return Program(tuple(self.ops), self.names[self.structure.output])

    def _mlp(self, component: Component) -> None:
        table: MlpTable = self.tables[component.name]
        block = self.structure.block(component.name)
        numerical = block.encoding == "numerical"
        layer, index = component.layer, component.name.rsplit("mlp", 1)[1]
        inputs = component.inputs
        confidence = 1.0
        if table.coefficients is not None:
            kind = "linear_sequence_map"
        elif len(inputs) == 2:
            kind = "sequence_map"
        else:
            kind = "map"
        name = f"{kind}_{layer}_{index}"
        self.names[component.name] = name
        how = f"MLP {layer} hidden units {list(component.hidden_units)}"
        if kind == "linear_sequence_map":
            op = Op(
                kind, name, tuple(self.names[i] for i in inputs), "numerical", coefficients=table.coefficients
            )
        else:
            inputs, rows = mlp_value_rows(self.model, self.structure, self.tables, self.values, component)
            if not component.inputs:  # reads nothing: a constant, whatever its input
                confidence = 0.5
            fn = match_library(rows, numerical)
            if fn is None and table.steps is not None:
                # Observed inputs are a part of what tracr discretised: the steps hold every value.
                thresholds, regions = table.steps
                outputs = tuple(_plain(r) if numerical else self.values.values[r] for r in regions)
                fn = Fn.from_steps(thresholds, outputs)
            if fn is None:
                fn = Fn.from_table({k if len(k) > 1 else k[0]: v for k, v in rows.items()}, len(inputs))
            op = Op(kind, name, tuple(self.names[i] for i in inputs), block.encoding, fn=fn)
            how += f", function {fn.describe()}"
        self.ops.append(op)
        self.components[name] = component.name
        self.confidence[name] = confidence
        self.provenance[name] = how + self._labels_note(component.name)

    def _labels_note(self, block: str) -> str:
        method = self.values.how.get(block)
        return f", values {method}" if method else ""

    def _attention(self, component: Component) -> None:
        table: AttentionTable = self.tables[component.name]
        block = self.structure.block(component.name)
        query, key = component.inputs
        confidence = 1.0
        comparison = comparison_of(table.selects, self.values.values)
        predicate = None if comparison is not None else predicate_of(table.selects, self.values.values)
        if query is None or key is None:
            confidence = min(confidence, 0.5)
            # tracr needs `tokens` in every program; an unread operand may be anything.
            query, key = query or "tokens", key or "tokens"
        kind = component.kind
        suffix = f"{component.layer}_{component.head}"
        select = Op(
            "select",
            f"select_{suffix}",
            (self.names[key], self.names[query]),
            comparison=comparison,
            fn=predicate,
        )
        name = f"{kind}_{suffix}"
        self.names[component.name] = name
        if kind == "aggregate":
            op = Op(kind, name, (select.name, self.names[component.value]), block.encoding)
        else:
            op = Op(kind, name, (select.name,), block.encoding)
        self.ops += [select, op]
        self.components[select.name] = self.components[name] = component.name
        where = f"layer {component.layer} head {component.head}"
        for op_name in (select.name, name):
            self.confidence[op_name] = confidence
        what = f"comparison {comparison}" if predicate is None else f"custom predicate {predicate.describe()}"
        self.provenance[select.name] = f"{where} predicate table, {what}"
        self.provenance[name] = f"{where}" + self._labels_note(component.name)
