"""RASP semantics of a program IR, with undefined values made explicit.

In: a `Program` and input sequences. Out: every op's values on each input
(`trace`), or just the output (`evaluate`). A value is None where RASP leaves
it undefined: a categorical Aggregate selecting nothing, or selecting several
different values (MIXED inside: tracr holds a blend there, and whatever reads
it, Selects included, is undefined too), a function raising
an arithmetic error or asked outside its table, and everything computed from
an undefined value, except through a Select: there, as in tracr's model, an
undefined query or key is simply not selected. This is
the reference the compiled model must match wherever it is defined.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from raspsynth.program.canonical import apply_ignoring_errors, function_of, select_predicate
from raspsynth.program.ir import Op, Program


class _Mixed:
    """A categorical Aggregate over several different values: tracr's model
    holds a blend there, and anything that reads it computes garbage."""

    def __repr__(self) -> str:
        return "MIXED"


MIXED = _Mixed()


def trace(program: Program, xs: Sequence[Hashable]) -> dict[str, list]:
    """Name -> per-position values (selectors: query-by-key boolean matrices,
    None where an operand is MIXED). Undefined values are None."""
    values: dict[str, list] = {"tokens": list(xs), "indices": list(range(len(xs)))}
    for op in program.ops:
        values[op.name] = eval_op(op, [values[i] for i in op.inputs], len(xs))
    selects = {op.name for op in program.ops if op.kind == "select"}
    return {
        name: row if name in selects else [None if v is MIXED else v for v in row]
        for name, row in values.items()
    }


def evaluate(program: Program, inputs: Sequence[Sequence[Hashable]]) -> list[list]:
    """The program's output on each input sequence."""
    return [trace(program, xs)[program.output] for xs in inputs]


def eval_op(op: Op, args: list, n: int) -> list:
    """One op's values on one input of length n, given its inputs' values
    (which may hold MIXED)."""
    if op.kind == "select":
        keys, queries = args
        predicate = select_predicate(op)
        # As in tracr's model: an undefined query or key (an all-zero block)
        # scores nothing, so it is simply not selected; a MIXED one is unknown.
        return [[_select_entry(predicate, k, q) for k in keys] for q in queries]
    if op.kind == "selector_width":
        return [MIXED if None in row else sum(row) for row in args[0]]
    if op.kind == "aggregate":
        selector, sop = args
        return [MIXED if None in row else _aggregate(row, sop, op.encoding) for row in selector]
    f = function_of(op) if op.kind != "map" else op.fn.bind()
    if op.kind == "map":
        return [x if x is None or x is MIXED else apply_ignoring_errors(f, x) for x in args[0]]
    return [
        MIXED
        if x is MIXED or y is MIXED
        else None
        if x is None or y is None
        else apply_ignoring_errors(f, x, y)
        for x, y in zip(args[0], args[1])
    ]


def _select_entry(predicate, key, query) -> bool | None:
    if key is MIXED or query is MIXED:
        return None
    return key is not None and query is not None and bool(predicate(key, query))


def _aggregate(row: list[bool], values: list, encoding: str):
    selected = [v for v, s in zip(values, row) if s]
    if any(v is MIXED for v in selected):
        return MIXED
    if encoding == "numerical":
        # Only numbers average: a value that is not one (a string a numerical
        # Map passed through) leaves the mean undefined, as None.
        if any(v is None or not isinstance(v, int | float) for v in selected):
            return None
        return sum(selected) / len(selected) if selected else 0
    if not selected or all(v is None for v in selected):
        return None
    distinct = {(type(v), v) for v in selected}
    return selected[0] if len(distinct) == 1 and None not in selected else MIXED
