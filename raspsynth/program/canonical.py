"""Value sets, canonical form and canonical hash of a program IR.

In: a `Program` plus the vocab and max_seq_len it is compiled with. Out:
the value set of every op (mirroring tracr's basis inference), a canonical
`Program`, and a hash of it for deduplication.

The canonical form removes dead code, merges identical subexpressions,
replaces every function by its table on its actual input domain (so functions
equal on that domain, like `mod(k=2)` and `parity`, are identified; a custom
predicate equal to one of tracr's comparisons there becomes that comparison), orders the
operands of a two-input op by structure (transposing its table or swapping
its coefficients), and renames ops v0, v1, ... in a deterministic topological
order. Two programs with the same canonical hash compile to the same model.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from raspsynth.program.ir import PREDICATES, SOURCES, Fn, Op, Program

ValueSet = frozenset


def apply_ignoring_errors(f: Callable, *args: Any) -> Any:
    """f(*args), or None where it raises an arithmetic error (as tracr does) or
    a table function is asked outside its domain (undefined there)."""
    try:
        return f(*args)
    except (ArithmeticError, ValueError, TypeError, KeyError):
        return None


def op_value_set(op: Op, inputs: list[ValueSet], max_seq_len: int) -> ValueSet:
    """The values `op` can take, given its inputs' value sets (tracr's rule)."""
    if op.kind == "map":
        f = op.fn.bind()
        results = (apply_ignoring_errors(f, x) for x in inputs[0])
    elif op.kind in ("sequence_map", "linear_sequence_map"):
        f = function_of(op)
        results = (apply_ignoring_errors(f, x, y) for x, y in itertools.product(*inputs))
    elif op.kind == "aggregate":
        if op.encoding == "categorical":
            return inputs[1]
        results = (v / n for v in inputs[1] for n in range(1, max_seq_len + 1))
    elif op.kind == "selector_width":
        return frozenset(range(max_seq_len + 1))
    else:  # select: a selector has no values
        return frozenset()
    return frozenset(r for r in results if r is not None)


def function_of(op: Op) -> Callable:
    """The element-wise function a map, sequence_map or linear_sequence_map computes."""
    if op.kind == "linear_sequence_map":
        a, b = op.coefficients
        return lambda x, y: a * x + b * y
    return op.fn.bind()


def select_predicate(op: Op) -> Callable[[Hashable, Hashable], bool]:
    """The predicate a select op computes, called as predicate(key, query):
    False where a custom predicate raises or is asked outside its table."""
    if op.fn is None:
        return PREDICATES[op.comparison]
    f = op.fn.bind()
    return lambda key, query: bool(apply_ignoring_errors(f, key, query))


def value_sets(program: Program, vocab: Iterable[Hashable], max_seq_len: int) -> dict[str, ValueSet]:
    """Name -> value set for the sources and every op of `program`."""
    sets: dict[str, ValueSet] = {
        "tokens": frozenset(vocab),
        "indices": frozenset(range(max_seq_len)),
    }
    for op in program.ops:
        sets[op.name] = op_value_set(op, [sets[i] for i in op.inputs], max_seq_len)
    return sets


def live_ops(program: Program) -> list[Op]:
    """The ops the output depends on, in program order."""
    needed = {program.output}
    for op in reversed(program.ops):
        if op.name in needed:
            needed.update(op.inputs)
    return [op for op in program.ops if op.name in needed]


def tabulate(op: Op, domains: list[ValueSet]) -> Fn:
    """The op's function as an exact table over the product of its input domains."""
    f = op.fn.bind()
    if op.fn.arity == 1:
        table = {x: apply_ignoring_errors(f, x) for x in domains[0]}
    else:
        table = {(x, y): apply_ignoring_errors(f, x, y) for x, y in itertools.product(*domains)}
    return Fn.from_table({k: v for k, v in table.items() if v is not None}, op.fn.arity)


def canonical_form(program: Program, vocab: Iterable[Hashable], max_seq_len: int) -> Program:
    """The canonical program equivalent to `program` (see module docstring)."""
    sets = value_sets(program, vocab, max_seq_len)
    keys: dict[str, str] = {name: name for name in SOURCES}  # structural key per name
    rewritten: dict[str, Op] = {}
    for op in live_ops(program):
        op = _normalise(op, [sets[i] for i in op.inputs], keys)
        keys[op.name] = _digest(_structure(op, keys))
        rewritten[op.name] = op

    # Deterministic topological order: DFS post-order from the output,
    # merging ops with equal structure.
    new_name: dict[str, str] = {name: name for name in SOURCES}
    by_key: dict[str, str] = {}
    ordered: list[Op] = []

    def visit(name: str) -> None:
        if name in new_name:
            return
        op = rewritten[name]
        for ref in op.inputs:
            visit(ref)
        if keys[name] in by_key:
            new_name[name] = by_key[keys[name]]
            return
        new_name[name] = by_key[keys[name]] = f"v{len(ordered)}"
        ordered.append(
            Op(
                kind=op.kind,
                name=new_name[name],
                inputs=tuple(new_name[i] for i in op.inputs),
                encoding=op.encoding,
                fn=op.fn,
                comparison=op.comparison,
                coefficients=op.coefficients,
            )
        )

    visit(program.output)
    return Program(tuple(ordered), new_name[program.output])


def _normalise(op: Op, domains: list[ValueSet], keys: dict[str, str]) -> Op:
    """Tabulate the function and order commutable operands by structure."""
    if op.kind == "select" and op.fn is not None:
        return _canonical_select(op, domains)
    fn = tabulate(op, domains) if op.fn is not None else None
    inputs, coefficients = op.inputs, op.coefficients
    if op.kind in ("sequence_map", "linear_sequence_map") and keys[inputs[1]] < keys[inputs[0]]:
        inputs = (inputs[1], inputs[0])
        if coefficients is not None:
            coefficients = (coefficients[1], coefficients[0])
        if fn is not None:
            fn = Fn.from_table({(y, x): v for (x, y), v in fn.table}, 2)
    return Op(op.kind, op.name, inputs, op.encoding, fn, op.comparison, coefficients)


def _canonical_select(op: Op, domains: list[ValueSet]) -> Op:
    """A custom predicate as tracr's comparison equal to it on keys x queries,
    else as its table there."""
    predicate = select_predicate(op)
    pairs = list(itertools.product(*domains))
    table = {pair: predicate(*pair) for pair in pairs}
    for name, comparison in PREDICATES.items():
        if all(bool(apply_ignoring_errors(comparison, *pair)) == chosen for pair, chosen in table.items()):
            return Op("select", op.name, op.inputs, comparison=name)
    return Op("select", op.name, op.inputs, fn=Fn.from_table(table, 2))


def _structure(op: Op, keys: dict[str, str]) -> str:
    fn = repr(op.fn.table) if op.fn is not None else ""
    return "|".join(
        [op.kind, op.encoding, fn, str(op.comparison), repr(op.coefficients)] + [keys[i] for i in op.inputs]
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_hash(program: Program, vocab: Iterable[Hashable], max_seq_len: int) -> str:
    """A 16-hex-digit hash of the canonical form, for deduplication and splits."""
    canonical = canonical_form(program, vocab, max_seq_len)
    return _digest(canonical.dumps())[:16]
