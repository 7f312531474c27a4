"""The library of element-wise functions and Select predicates that programs
name by id.

Each entry pairs a Python implementation with the lambda source written into
generated programs; a test checks that the two agree on the default domain.
Parameters are small integers (`add(k=2)` is `lambda x: x + 2`).

Predicates (`predicate=True`) are the boolean functions of (key, query) that
people pass to `rasp.Select` besides tracr's 8 comparisons: a shift
(`q == k + c`, tracr lib's `shift_by`), a bounded look-back (`k < q + c`),
a window (`abs(k - q) <= c`) and a residue class (`k % c == q % c`).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class LibraryFunction:
    """A named family of functions `impl(*params)(x[, y])`.

    `template` is the lambda's source with `{k}`-style placeholders for the
    parameters; `boolean` says the outputs are True/False (so the function
    can feed a numerical mean); `param_range` bounds sampled parameters.
    """

    name: str
    arity: int
    params: tuple[str, ...]
    impl: Callable[..., Callable]
    template: str
    boolean: bool = False
    param_range: tuple[int, int] = (0, 0)
    predicate: bool = False  # a Select predicate of (key, query), not a Map's function

    def source(self, args: tuple[int, ...]) -> str:
        # `q + -1` reads as `q - 1`.
        return self.template.format(**dict(zip(self.params, args))).replace("+ -", "- ")

    def bind(self, args: tuple[int, ...]) -> Callable:
        return self.impl(*args)


def _unary(name, impl, template, params=(), boolean=False, param_range=(0, 0)):
    return LibraryFunction(name, 1, params, impl, template, boolean, param_range)


def _binary(name, fn, template, boolean=False):
    # A fresh lambda per binding, so callers may tag it (builtins take no attributes).
    return LibraryFunction(name, 2, (), lambda: lambda x, y: fn(x, y), template, boolean)


def _threshold(name, symbol, fn):
    """`x <op> k` for a comparison operator: a boolean unary function."""
    return _unary(
        name,
        lambda k: lambda x: fn(x, k),
        f"lambda x: x {symbol} {{k}}",
        ("k",),
        boolean=True,
        param_range=(0, 3),
    )


def _predicate(name, impl, template, param_range):
    """A Select predicate `impl(c)(key, query)` with one parameter `c`."""
    return LibraryFunction(name, 2, ("c",), impl, template, True, param_range, predicate=True)


_COMPARISONS = {
    "eq": ("==", operator.eq),
    "neq": ("!=", operator.ne),
    "lt": ("<", operator.lt),
    "leq": ("<=", operator.le),
    "gt": (">", operator.gt),
    "geq": (">=", operator.ge),
}

_ENTRIES: list[LibraryFunction] = [
    _unary("identity", lambda: lambda x: x, "lambda x: x"),
    _unary("add", lambda k: lambda x: x + k, "lambda x: x + {k}", ("k",), param_range=(1, 3)),
    _unary("sub", lambda k: lambda x: x - k, "lambda x: x - {k}", ("k",), param_range=(1, 3)),
    _unary("mul", lambda k: lambda x: x * k, "lambda x: x * {k}", ("k",), param_range=(2, 3)),
    _unary("mod", lambda k: lambda x: x % k, "lambda x: x % {k}", ("k",), param_range=(2, 4)),
    _unary("floordiv", lambda k: lambda x: x // k, "lambda x: x // {k}", ("k",), param_range=(2, 3)),
    _unary("min", lambda k: lambda x: min(x, k), "lambda x: min(x, {k})", ("k",), param_range=(1, 3)),
    _unary("max", lambda k: lambda x: max(x, k), "lambda x: max(x, {k})", ("k",), param_range=(1, 3)),
    _unary("neg", lambda: lambda x: -x, "lambda x: -x"),
    _unary("abs_diff", lambda k: lambda x: abs(x - k), "lambda x: abs(x - {k})", ("k",), param_range=(1, 3)),
    _unary("const", lambda k: lambda x: k, "lambda x: {k}", ("k",), param_range=(0, 2)),
    _unary("parity", lambda: lambda x: x % 2 == 1, "lambda x: x % 2 == 1", boolean=True),
    _unary("not", lambda: lambda x: not x, "lambda x: not x", boolean=True),
    *(_threshold(name, symbol, fn) for name, (symbol, fn) in _COMPARISONS.items()),
    _binary("add2", lambda x, y: x + y, "lambda x, y: x + y"),
    _binary("sub2", lambda x, y: x - y, "lambda x, y: x - y"),
    _binary("mul2", lambda x, y: x * y, "lambda x, y: x * y"),
    _binary("min2", lambda x, y: min(x, y), "lambda x, y: min(x, y)"),
    _binary("max2", lambda x, y: max(x, y), "lambda x, y: max(x, y)"),
    _binary("abs_diff2", lambda x, y: abs(x - y), "lambda x, y: abs(x - y)"),
    _binary("and2", lambda x, y: bool(x) and bool(y), "lambda x, y: bool(x) and bool(y)", True),
    _binary("or2", lambda x, y: bool(x) or bool(y), "lambda x, y: bool(x) or bool(y)", True),
    *(
        _binary(f"{name}2", fn, f"lambda x, y: x {symbol} y", True)
        for name, (symbol, fn) in _COMPARISONS.items()
    ),
    # c = 0 would be a tracr comparison (EQ, LT, GT), which the reading prefers.
    _predicate("shift", lambda c: lambda k, q: q == k + c, "lambda k, q: q == k + {c}", (-3, 3)),
    _predicate("before", lambda c: lambda k, q: k < q + c, "lambda k, q: k < q + {c}", (-3, 3)),
    _predicate("after", lambda c: lambda k, q: k > q + c, "lambda k, q: k > q + {c}", (-3, 3)),
    _predicate("window", lambda c: lambda k, q: abs(k - q) <= c, "lambda k, q: abs(k - q) <= {c}", (1, 3)),
    _predicate("same_mod", lambda c: lambda k, q: k % c == q % c, "lambda k, q: k % {c} == q % {c}", (2, 4)),
]

LIBRARY: dict[str, LibraryFunction] = {entry.name: entry for entry in _ENTRIES}

# Binary functions whose arguments may be swapped without changing the result.
COMMUTATIVE = frozenset({"add2", "mul2", "min2", "max2", "abs_diff2", "and2", "or2", "eq2", "neq2"})
