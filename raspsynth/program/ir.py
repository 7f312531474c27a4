"""The program IR: a typed, serializable RASP program.

In: nothing (this module defines the data). Out: `Program`, a tuple of `Op`s
in topological order plus the name of the output. The IR covers what tracr
compiles: tokens, indices, Map, SequenceMap, LinearSequenceMap, Select,
categorical and numerical Aggregate, SelectorWidth, with categorical/numerical
encodings. Every element-wise function is a `Fn`: a library function with
integer parameters, or an explicit finite table. A Select's predicate is one
of tracr's 8 comparisons (`comparison`) or any boolean function of (key,
query) (`fn`: a library predicate such as `q == k + 1`, or a table).

The IR knows nothing of tracr; `raspsynth.tracr_bridge.rasp_conversion`
converts both ways.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections.abc import Callable, Hashable
from typing import Any

from raspsynth.errors import RaspsynthError
from raspsynth.program.functions import LIBRARY

SOURCES = ("tokens", "indices")
# tracr's comparisons, called as predicate(key, query).
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
COMPARISONS = tuple(PREDICATES)
PREDICATE_ARGUMENTS = ("k", "q")  # a custom predicate's lambda is written `lambda k, q: ...`
ENCODINGS = ("categorical", "numerical")

# kind -> number of inputs; inputs are names of earlier ops or of SOURCES.
OP_ARITY = {
    "map": 1,
    "sequence_map": 2,
    "linear_sequence_map": 2,
    "select": 2,  # (keys, queries)
    "aggregate": 2,  # (selector, sop)
    "selector_width": 1,  # (selector,)
}
OP_KINDS = tuple(OP_ARITY)


class ProgramError(RaspsynthError, ValueError):
    """A program IR that is malformed (bad reference, unknown function, ...)."""


@dataclasses.dataclass(frozen=True)
class Fn:
    """An element-wise function: `LIBRARY[name]` with `params`, a table, or
    a step function of one number ("steps", `from_steps`).

    A table maps argument values (a tuple `(x, y)` for binary functions) to
    results; it is exact on its domain and None (undefined) elsewhere.
    """

    name: str
    params: tuple[int, ...] = ()
    table: tuple[tuple[Hashable, Hashable], ...] | None = None
    arity: int = 1

    def __post_init__(self) -> None:
        if self.name in ("table", "steps"):
            if self.table is None:
                raise ProgramError(f"a {self.name} function needs its table")
            if self.name == "steps" and (self.arity != 1 or self.table[0][0] is not None):
                raise ProgramError("a steps function is unary and its first step has no threshold")
            return
        entry = LIBRARY.get(self.name)
        if entry is None:
            raise ProgramError(f"unknown library function {self.name!r}")
        if len(self.params) != len(entry.params):
            raise ProgramError(f"{self.name} takes parameters {entry.params}, got {self.params}")
        object.__setattr__(self, "arity", entry.arity)

    @staticmethod
    def from_steps(thresholds: tuple[float, ...], values: tuple) -> Fn:
        """A step function: values[i] where x exceeds exactly i of the ascending
        `thresholds`. tracr compiles a Map of a numerical SOp as one (a
        discretising MLP), so it is exact on every value tracr infers."""
        return Fn("steps", table=((None, values[0]), *zip(thresholds, values[1:])), arity=1)

    @staticmethod
    def from_table(mapping: dict, arity: int) -> Fn:
        items = tuple(sorted(mapping.items(), key=lambda kv: repr(kv[0])))
        return Fn("table", table=items, arity=arity)

    def bind(self) -> Callable:
        """A Python callable computing this function."""
        if self.name == "steps":
            thresholds, values = [t for t, _ in self.table[1:]], [v for _, v in self.table]
            return lambda x: values[sum(x > t for t in thresholds)]
        if self.name == "table":
            lookup = dict(self.table)
            if self.arity == 1:
                return lambda x: lookup.get(x)
            return lambda x, y: lookup.get((x, y))
        return LIBRARY[self.name].bind(self.params)

    def source(self, names: tuple[str, ...] = ("x", "y")) -> str:
        """The lambda's Python source (tables become a dict lookup over
        arguments called `names`; a Select's predicate uses ("k", "q"))."""
        if self.name == "steps":
            values = _tuple_source([v for _, v in self.table])
            thresholds = _tuple_source([t for t, _ in self.table[1:]])
            x = names[0]
            return f"lambda {x}: {values}[sum({x} > t for t in {thresholds})]"
        if self.name == "table":
            body = "{" + ", ".join(f"{k!r}: {v!r}" for k, v in self.table) + "}"
            # .get: None outside the table, which tracr leaves out of the value set.
            if self.arity == 1:
                return f"lambda {names[0]}: {body}.get({names[0]})"
            x, y = names[:2]
            return f"lambda {x}, {y}: {body}.get(({x}, {y}))"
        return LIBRARY[self.name].source(self.params)

    def describe(self) -> str:
        if self.name in ("table", "steps"):
            return f"{self.name}[{len(self.table)}]"
        entry = LIBRARY[self.name]
        args = ", ".join(f"{p}={v}" for p, v in zip(entry.params, self.params))
        return f"{self.name}({args})"

    def to_json(self) -> dict[str, Any]:
        if self.name == "steps":
            return {"fn": "steps", "steps": [list(step) for step in self.table]}
        if self.name == "table":
            return {"fn": "table", "arity": self.arity, "table": [[_jsonable(k), v] for k, v in self.table]}
        return {"fn": self.name, "params": list(self.params)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Fn:
        if data["fn"] == "steps":
            return Fn("steps", table=tuple(tuple(step) for step in data["steps"]), arity=1)
        if data["fn"] == "table":
            arity = data["arity"]
            table = tuple((tuple(k) if arity == 2 else k, v) for k, v in data["table"])
            return Fn("table", table=table, arity=arity)
        return Fn(data["fn"], tuple(data.get("params", ())))


def _tuple_source(items: list) -> str:
    return "(" + ", ".join(map(repr, items)) + ("," if len(items) == 1 else "") + ")"


def _jsonable(key: Hashable) -> Any:
    return list(key) if isinstance(key, tuple) else key


@dataclasses.dataclass(frozen=True)
class Op:
    """One RASP operation, named `name`, reading the ops named in `inputs`.

    `fn` is set for map/sequence_map, and `coefficients` for
    linear_sequence_map. A select has either `comparison` (tracr's) or `fn`,
    a custom predicate called as fn(key, query). `encoding` is the output's
    (selects have none: "selector").
    """

    kind: str
    name: str
    inputs: tuple[str, ...]
    encoding: str = "categorical"
    fn: Fn | None = None
    comparison: str | None = None
    coefficients: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.kind not in OP_ARITY:
            raise ProgramError(f"unknown op kind {self.kind!r}")
        if len(self.inputs) != OP_ARITY[self.kind]:
            raise ProgramError(f"{self.kind} {self.name} takes {OP_ARITY[self.kind]} inputs")
        if self.kind == "select":
            object.__setattr__(self, "encoding", "selector")
            if self.fn is not None:
                if self.comparison is not None or self.fn.arity != 2:
                    raise ProgramError(f"select {self.name} needs one comparison or one 2-ary predicate")
            elif self.comparison not in COMPARISONS:
                raise ProgramError(f"select {self.name} has comparison {self.comparison!r}")
        elif self.encoding not in ENCODINGS:
            raise ProgramError(f"{self.name} has encoding {self.encoding!r}")
        if self.kind in ("map", "sequence_map"):
            if self.fn is None or self.fn.arity != OP_ARITY[self.kind]:
                raise ProgramError(f"{self.kind} {self.name} needs a {OP_ARITY[self.kind]}-ary fn")
        if self.kind == "linear_sequence_map" and self.coefficients is None:
            raise ProgramError(f"linear_sequence_map {self.name} needs coefficients")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "name": self.name, "inputs": list(self.inputs)}
        if self.kind != "select":
            data["encoding"] = self.encoding
        if self.fn is not None:
            data["fn"] = self.fn.to_json()
        if self.comparison is not None:
            data["comparison"] = self.comparison
        if self.coefficients is not None:
            data["coefficients"] = list(self.coefficients)
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> Op:
        return Op(
            kind=data["kind"],
            name=data["name"],
            inputs=tuple(data["inputs"]),
            encoding=data.get("encoding", "categorical"),
            fn=Fn.from_json(data["fn"]) if "fn" in data else None,
            comparison=data.get("comparison"),
            coefficients=tuple(data["coefficients"]) if "coefficients" in data else None,
        )


@dataclasses.dataclass(frozen=True)
class Program:
    """Ops in topological order; `output` names the op whose value is returned."""

    ops: tuple[Op, ...]
    output: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        kinds = {name: "sop" for name in SOURCES}
        for op in self.ops:
            if op.name in kinds:
                raise ProgramError(f"name {op.name!r} is defined twice")
            for position, ref in enumerate(op.inputs):
                if ref not in kinds:
                    raise ProgramError(f"{op.name} reads {ref!r}, which is not defined before it")
                wants_selector = op.kind in ("aggregate", "selector_width") and position == 0
                if (kinds[ref] == "selector") != wants_selector:
                    raise ProgramError(f"{op.name} input {ref!r} has the wrong type")
            kinds[op.name] = "selector" if op.kind == "select" else "sop"
        if kinds.get(self.output) != "sop" or self.output in SOURCES:
            raise ProgramError(f"output {self.output!r} is not an SOp computed by the program")

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def encoding(self, name: str) -> str:
        return "categorical" if name in SOURCES else self.op(name).encoding

    @property
    def num_sops(self) -> int:
        """Operations that produce a value (selects excluded), as papers count length."""
        return sum(op.kind != "select" for op in self.ops)

    def to_json(self) -> dict[str, Any]:
        return {"ops": [op.to_json() for op in self.ops], "output": self.output}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Program:
        try:
            return Program(tuple(Op.from_json(op) for op in data["ops"]), data["output"])
        except (KeyError, TypeError) as err:
            raise ProgramError(f"malformed program JSON: {err!r}") from None

    @staticmethod
    def loads(text: str) -> Program:
        return Program.from_json(json.loads(text))


@functools.cache
def library_predicates() -> tuple[Fn, ...]:
    """Every library Select predicate with parameters in its range, less those
    equal to one of tracr's comparisons (a shift by 0 is EQ)."""
    grid = list(itertools.product(range(-4, 9), repeat=2))
    fns = []
    for entry in LIBRARY.values():
        if not entry.predicate:
            continue
        low, high = entry.param_range
        for params in itertools.product(range(low, high + 1), repeat=len(entry.params)):
            f = entry.bind(params)
            if not any(all(f(k, q) == c(k, q) for k, q in grid) for c in PREDICATES.values()):
                fns.append(Fn(entry.name, tuple(params)))
    return tuple(fns)
