"""RASP semantics of a program IR, with undefined values made explicit.

In: a `Program` and input sequences. Out: every op's values on each input
(`trace`), or just the output (`evaluate`). A value is None where RASP leaves
it undefined: a categorical Aggregate selecting nothing, or selecting several
different values (which tracr cannot compile faithfully), a function raising
an arithmetic error or asked outside its table, and everything computed from
an undefined value, except through a Select: there, as in tracr's model, an
undefined query or key is simply not selected. This is
the reference the compiled model must match wherever it is defined.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from raspsynth.program.canonical import apply_ignoring_errors, function_of
from raspsynth.program.ir import Op, Program

PREDICATES = {
    "EQ": lambda key, query: key == query,
    "LT": lambda key, query: key < query,
    "LEQ": lambda key, query: key <= query,
    "GT": lambda key, query: key > query,
    "GEQ": lambda key, query: key >= query,
    "NEQ": lambda key, query: key != query,
    "TRUE": lambda key, query: True,
    "FALSE": lambda key, query: False,
}


def trace(program: Program, xs: Sequence[Hashable]) -> dict[str, list]:
    """Name -> per-position values (selectors: query-by-key boolean matrices)."""
    values: dict[str, list] = {"tokens": list(xs), "indices": list(range(len(xs)))}
    for op in program.ops:
        values[op.name] = eval_op(op, [values[i] for i in op.inputs], len(xs))
    return values


def evaluate(program: Program, inputs: Sequence[Sequence[Hashable]]) -> list[list]:
    """The program's output on each input sequence."""
    return [trace(program, xs)[program.output] for xs in inputs]


def eval_op(op: Op, args: list, n: int) -> list:
    """One op's values on one input of length n, given its inputs' values."""
    if op.kind == "select":
        keys, queries = args
        predicate = PREDICATES[op.comparison]
        # As in tracr's model: an undefined query or key (an all-zero block)
        # scores nothing, so it is simply not selected.
        return [[k is not None and q is not None and bool(predicate(k, q)) for k in keys] for q in queries]
    if op.kind == "selector_width":
        return [sum(row) for row in args[0]]
    if op.kind == "aggregate":
        selector, sop = args
        return [_aggregate(row, sop, op.encoding) for row in selector]
    f = function_of(op) if op.kind != "map" else op.fn.bind()
    if op.kind == "map":
        return [None if x is None else apply_ignoring_errors(f, x) for x in args[0]]
    return [
        None if x is None or y is None else apply_ignoring_errors(f, x, y) for x, y in zip(args[0], args[1])
    ]


def _aggregate(row: list[bool], values: list, encoding: str):
    selected = [v for v, s in zip(values, row) if s]
    if encoding == "numerical":
        if any(v is None for v in selected):
            return None
        return sum(selected) / len(selected) if selected else 0
    distinct = set(selected)
    if len(distinct) != 1 or None in distinct:
        return None
    return selected[0]
