"""Expression search, in the spirit of MIPS: a lookup table -> a readable lambda.

In: a finite table (argument value, or (x, y) pair, -> result) and its arity;
a Select predicate's table is over (key, query) pairs and reads as
`lambda k, q: ...`.
Out: the smallest expression over a small grammar that reproduces the table
exactly on its domain, or, failing that, an exact table lambda (a dict
lookup), which always exists.

Grammar: the arguments x (and y); integer constants -3..5; unary -e, abs(e),
not e; binary e + e, e - e, e * e, min(e, e), max(e, e), e // c and e % c
(c a positive constant), the six comparisons, and/or; a conditional
(e if c else e). Enumeration is bottom-up by description length (the number
of grammar symbols), keeping one expression per distinct behaviour on the
domain (observational equivalence), so the first match is a smallest one.
Boolean tables are found by the same search among boolean-valued
expressions; results must match in type too (True is not accepted for 1).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections.abc import Callable, Hashable, Iterator, Mapping

CONSTANTS = tuple(range(-3, 6))
DEFAULT_MAX_SIZE = 7
DEFAULT_MAX_CANDIDATES = 100_000
DEFAULT_TIME_BUDGET_S = 2.0


@dataclasses.dataclass(frozen=True)
class Expression:
    """A function found for a table: its lambda source and how it was found.

    `method` is "expression" (arithmetic/mixed grammar), "boolean" (a
    boolean-valued table matched by a boolean expression) or "table" (the
    exact dict-lookup fallback). `size` is the description length (for a
    table, its number of entries).
    """

    source: str
    method: str
    size: int

    def bind(self) -> Callable:
        return eval(self.source)  # our own generated text, over a closed grammar


@dataclasses.dataclass(frozen=True)
class _Candidate:
    text: str
    values: tuple  # results on the domain, in domain order
    precedence: int  # 0 atom/call, 1 conditional/boolean, 2 comparison, 3 sum, 4 product, 5 unary


def _key(values: tuple) -> tuple:
    # Distinguish True from 1: a categorical value's type is part of the value.
    return tuple((type(v).__name__ == "bool", v) for v in values)


def _wrap(c: _Candidate, below: int) -> str:
    return f"({c.text})" if c.precedence and c.precedence < below else c.text


def find_expression(
    table: Mapping[Hashable, Hashable],
    arity: int,
    max_size: int = DEFAULT_MAX_SIZE,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    names: tuple[str, str] = ("x", "y"),
) -> Expression:
    """The simplest grammar expression equal to `table` on its domain, else a
    table lambda. The search stops at `max_size` symbols, `max_candidates`
    distinct behaviours or `time_budget_s` seconds, whichever comes first.
    `names` are the arguments' names (a Select predicate's are ("k", "q"))."""
    args = list(names[:arity])
    domain = list(table)
    if not domain:
        return _table_expression(table, args)
    target = _key(tuple(table[d] for d in domain))
    points = [(d,) if arity == 1 else tuple(d) for d in domain]
    numeric = all(isinstance(v, (int, float)) for p in points for v in p)
    boolean_target = all(isinstance(v, bool) for v in table.values())
    if not numeric:
        return _table_expression(table, args)

    by_size: dict[int, list[_Candidate]] = {}
    seen: set[tuple] = set()
    deadline = time.monotonic() + time_budget_s

    def add(size: int, text: str, values: tuple, precedence: int) -> bool:
        """Keep a candidate with a new behaviour; True if it is the target's."""
        key = _key(values)
        if key in seen:
            return False
        seen.add(key)
        by_size.setdefault(size, []).append(_Candidate(text, values, precedence))
        return key == target

    leaves = [(a, tuple(p[i] for p in points)) for i, a in enumerate(args)]
    leaves += [(str(c), tuple(c for _ in points)) for c in CONSTANTS]
    for text, values in leaves:
        if add(1, text, values, 0):
            return _finish(text, 1, boolean_target, args, table, points)

    for size in range(2, max_size + 1):
        for text, values, precedence in _grow(by_size, size):
            if add(size, text, values, precedence):
                return _finish(text, size, boolean_target, args, table, points)
            if len(seen) > max_candidates or time.monotonic() > deadline:
                return _table_expression(table, args)
    return _table_expression(table, args)


def _apply(f: Callable, *columns: tuple) -> tuple | None:
    try:
        values = tuple(f(*vs) for vs in zip(*columns))
    except (ArithmeticError, TypeError, ValueError):
        return None
    if any(isinstance(v, float) and v != v for v in values):
        return None
    return values


def _grow(by_size: dict[int, list[_Candidate]], size: int) -> Iterator[tuple]:
    """New candidates of description length `size` from smaller ones (lazily)."""
    for c in by_size.get(size - 1, []):  # unary: one symbol plus the operand
        for text, prec, f in (
            (f"-{_wrap(c, 5)}", 5, lambda v: -v),
            (f"abs({c.text})", 0, abs),
            (f"not {_wrap(c, 1)}", 1, lambda v: not v),
        ):
            values = _apply(f, c.values)
            if values is not None:
                yield text, values, prec
    for left_size in range(1, size - 1):  # binary: one symbol plus two operands
        right_size = size - 1 - left_size
        for a, b in itertools.product(by_size.get(left_size, []), by_size.get(right_size, [])):
            yield from _binary(a, b)
    for cond_size in range(1, size - 2):  # conditional: one symbol plus three operands
        for then_size in range(1, size - 1 - cond_size):
            else_size = size - 1 - cond_size - then_size
            for cond in by_size.get(cond_size, []):
                if not all(isinstance(v, bool) for v in cond.values):
                    continue
                for a, b in itertools.product(by_size.get(then_size, []), by_size.get(else_size, [])):
                    values = tuple(x if c else y for c, x, y in zip(cond.values, a.values, b.values))
                    text = f"{_wrap(a, 2)} if {_wrap(cond, 2)} else {_wrap(b, 2)}"
                    yield text, values, 1


_COMPARISONS = (
    ("==", lambda u, v: u == v),
    ("!=", lambda u, v: u != v),
    ("<", lambda u, v: u < v),
    ("<=", lambda u, v: u <= v),
    (">", lambda u, v: u > v),
    (">=", lambda u, v: u >= v),
)


def _binary(a: _Candidate, b: _Candidate) -> list[tuple]:
    out = []
    ops = [
        (f"{_wrap(a, 3)} + {_wrap(b, 4)}", 3, lambda u, v: u + v),
        (f"{_wrap(a, 3)} - {_wrap(b, 4)}", 3, lambda u, v: u - v),
        (f"{_wrap(a, 4)} * {_wrap(b, 5)}", 4, lambda u, v: u * v),
        (f"min({a.text}, {b.text})", 0, min),
        (f"max({a.text}, {b.text})", 0, max),
        # Python's own semantics, as the text will run: operands, not bools.
        (f"{_wrap(a, 1)} and {_wrap(b, 1)}", 1, lambda u, v: u and v),
        (f"{_wrap(a, 1)} or {_wrap(b, 1)}", 1, lambda u, v: u or v),
    ]
    if b.precedence == 0 and len(set(b.values)) == 1 and isinstance(b.values[0], int) and b.values[0] > 1:
        ops += [
            (f"{_wrap(a, 4)} // {b.text}", 4, lambda u, v: u // v),
            (f"{_wrap(a, 4)} % {b.text}", 4, lambda u, v: u % v),
        ]
    ops += [(f"{_wrap(a, 3)} {sym} {_wrap(b, 3)}", 2, f) for sym, f in _COMPARISONS]
    for text, prec, f in ops:
        values = _apply(f, a.values, b.values)
        if values is not None:
            out.append((text, values, prec))
    return out


def _finish(body: str, size: int, boolean: bool, args: list[str], table: Mapping, points: list) -> Expression:
    method = "boolean" if boolean else "expression"
    return Expression(f"lambda {', '.join(args)}: {_simplified(body, args, table, points)}", method, size)


def _simplified(body: str, args: list[str], table: Mapping, points: list) -> str:
    """sympy's simplification of an arithmetic winner, kept only if it is
    still exact on the domain and no longer than the original."""
    if any(word in body for word in (" if ", " and ", " or ", "not ", "//", "%", "=", "<", ">")):
        return body  # sympy would rewrite these into forms Python reads worse
    import sympy

    symbols = {a: sympy.Symbol(a, integer=True) for a in args}
    try:
        expr = sympy.sympify(body, locals={**symbols, "abs": sympy.Abs, "min": sympy.Min, "max": sympy.Max})
        text = sympy.pycode(sympy.simplify(expr), fully_qualified_modules=False)
    except (sympy.SympifyError, TypeError, ValueError):
        return body
    text = text.replace("Abs(", "abs(")
    if len(text) > len(body) or not set(re.findall(r"[A-Za-z_]+", text)) <= {*args, "abs", "min", "max"}:
        return body  # longer, or sympy brought in names (floor, Piecewise, ...) the grammar lacks
    try:
        f = eval(f"lambda {', '.join(args)}: {text}")
        if all(_key((f(*p),)) == _key((table[d],)) for p, d in zip(points, table)):
            return text
    except (ArithmeticError, NameError, SyntaxError, TypeError, ValueError):
        pass
    return body


def _table_expression(table: Mapping[Hashable, Hashable], args: list[str]) -> Expression:
    items = sorted(table.items(), key=lambda kv: repr(kv[0]))
    body = "{" + ", ".join(f"{k!r}: {v!r}" for k, v in items) + "}"
    lookup = args[0] if len(args) == 1 else f"({', '.join(args)})"
    return Expression(f"lambda {', '.join(args)}: {body}.get({lookup})", "table", len(items))
