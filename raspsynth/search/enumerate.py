"""Enumeration: small programs built bottom-up, for weights that cannot be read.

In: a `Model`, its probe inputs and a deadline. Out: the first program,
smallest first, whose RASP semantics give the model's outputs on the
screening inputs and which then verifies on every probe input; or None.

This is search without structure: when the residual is rotated rather than
permuted, or the weights are not tracr's layout at all, only input/output
behaviour is left. Terms grow from `tokens` and `indices` by size:
Map(f, a) and SequenceMap(f, a, b) over the library's functions,
SelectorWidth(Select(k, q, c)) and Aggregate(Select(k, q, c), v) over all
eight comparisons, and over the library predicates (shifts, windows) where
keys and queries are both `indices`. Two terms with equal values on every screening input are
one term to the search (observational equivalence), so only the first
(smallest) is grown further.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator, Sequence

from raspsynth.program.evaluate import eval_op
from raspsynth.program.functions import LIBRARY
from raspsynth.program.ir import PREDICATES, Fn, Op, Program, ProgramError, library_predicates
from raspsynth.search.config import SearchConfig
from raspsynth.search.observe import agrees, rasp_outputs
from raspsynth.search.repair import screening_inputs
from raspsynth.search.verify import Verification, verify
from raspsynth.symbolic.value_semantics import library_functions
from raspsynth.tracr_bridge.model import Model, Token

ENUMERATION_SCREEN = 64


@dataclasses.dataclass(frozen=True)
class _Term:
    ops: tuple[Op, ...]  # topological, the term's own op last (empty for tokens/indices)
    name: str
    encoding: str
    size: int
    values: tuple  # per screening input, per position


@dataclasses.dataclass(frozen=True)
class EnumerationOutcome:
    program: Program | None
    verification: Verification | None
    terms: int  # distinct terms (by screening values) built
    timed_out: bool


def enumerate_programs(
    model: Model,
    inputs: Sequence[Sequence[Token]],
    deadline: float,
    seed: int = 0,
    max_size: int = SearchConfig.enumeration_size,
) -> EnumerationOutcome:
    screen = screening_inputs(inputs, seed, ENUMERATION_SCREEN)
    expected = tuple(tuple(row) for row in rasp_outputs(model, screen))
    want = "numerical" if model.spec.numerical else "categorical"
    lengths = [len(xs) for xs in screen]
    pool: dict[tuple, _Term] = {}
    for name in ("tokens", "indices"):
        values = tuple(tuple(xs) if name == "tokens" else tuple(range(len(xs))) for xs in screen)
        pool[("categorical", _signature(values))] = _Term((), name, "categorical", 0, values)
    counter = itertools.count()
    vocab = model.spec.vocab
    # Besides the library: "x == token" for every token, for vocabularies of
    # strings that the library's integer parameters cannot name.
    unary = [(fn, LIBRARY[fn.name].boolean) for fn in library_functions(1)] + [
        (Fn.from_table({v: v == token for v in vocab}, 1), True) for token in vocab
    ]
    for size in range(1, max_size + 1):
        for term in _grow(list(pool.values()), size, lengths, counter, unary):
            if time.monotonic() > deadline:
                return EnumerationOutcome(None, None, len(pool), timed_out=True)
            key = (term.encoding, _signature(term.values))
            if key in pool:
                continue
            pool[key] = term
            if term.encoding == want and _matches(term.values, expected, want == "numerical"):
                try:
                    program = Program(term.ops, term.name)
                except ProgramError:
                    continue
                result = verify(program, model, inputs, deadline, seed)
                if result.verified:
                    return EnumerationOutcome(program, result, len(pool), timed_out=False)
    return EnumerationOutcome(None, None, len(pool), timed_out=False)


def _signature(values: tuple) -> tuple:
    return tuple(tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in values)


def _matches(values: tuple, expected: tuple, numerical: bool) -> bool:
    return all(all(agrees(w, h, numerical) for w, h in zip(want, got)) for want, got in zip(expected, values))


def _apply(op: Op, children: list[_Term], lengths: list[int], select: Op | None = None) -> tuple | None:
    rows = []
    for i, n in enumerate(lengths):
        try:
            if select is not None:
                selector = eval_op(select, [children[0].values[i], children[1].values[i]], n)
                args = [selector] + [c.values[i] for c in children[2:]]
            else:
                args = [c.values[i] for c in children]
            row = eval_op(op, args, n)
        except (TypeError, KeyError):  # unordered values (strings with numbers); outside a table
            return None
        rows.append(tuple(row))
    rows = tuple(rows)
    if all(v is None for row in rows for v in row):
        return None
    return rows


def _merge(*terms: _Term) -> tuple[Op, ...]:
    seen, ops = set(), []
    for term in terms:
        for op in term.ops:
            if op.name not in seen:
                seen.add(op.name)
                ops.append(op)
    return tuple(ops)


def _grow(pool: list[_Term], size: int, lengths: list[int], counter, unary: list) -> Iterator[_Term]:
    """Every term of exactly `size` ops built from the pool's smaller terms."""
    categorical = [t for t in pool if t.encoding == "categorical"]
    numerical_values = [t for t in pool if t.encoding == "numerical"]
    for term in categorical:
        if term.size != size - 1:
            continue
        for fn, boolean in unary:
            for encoding in ("categorical", "numerical") if boolean else ("categorical",):
                name = f"map_{next(counter)}"
                op = Op("map", name, (term.name,), encoding, fn=fn)
                values = _apply(op, [term], lengths)
                if values is not None:
                    yield _Term(_merge(term) + (op,), name, encoding, size, values)
    for a, b in itertools.product(categorical, repeat=2):
        if a.size + b.size != size - 1 or a.name == b.name:
            continue
        for fn in library_functions(2):
            name = f"sequence_map_{next(counter)}"
            op = Op("sequence_map", name, (a.name, b.name), "categorical", fn=fn)
            values = _apply(op, [a, b], lengths)
            if values is not None:
                yield _Term(_merge(a, b) + (op,), name, "categorical", size, values)
    for keys, queries in itertools.product(categorical, repeat=2):
        budget = size - 1 - keys.size - queries.size
        if budget < 0:
            continue
        # Positions are what people shift and window over: library predicates
        # there; the eight comparisons everywhere.
        predicates = [(c, None) for c in PREDICATES]
        if keys.name == queries.name == "indices":
            predicates += [(None, p) for p in library_predicates()]
        for comparison, predicate in predicates:
            select = Op(
                "select",
                f"select_{next(counter)}",
                (keys.name, queries.name),
                comparison=comparison,
                fn=predicate,
            )
            if budget == 0:
                name = f"selector_width_{next(counter)}"
                op = Op("selector_width", name, (select.name,), "categorical")
                values = _apply(op, [keys, queries], lengths, select)
                if values is not None:
                    yield _Term(_merge(keys, queries) + (select, op), name, "categorical", size, values)
            for value in categorical + numerical_values:
                if value.size != budget:
                    continue
                name = f"aggregate_{next(counter)}"
                op = Op("aggregate", name, (select.name, value.name), value.encoding)
                values = _apply(op, [keys, queries, value], lengths, select)
                if values is not None:
                    ops = _merge(keys, queries, value) + (select, op)
                    yield _Term(ops, name, value.encoding, size, values)
