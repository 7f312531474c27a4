"""Program IR <-> tracr RASP, and RASP evaluation.

In: a `Program` (`to_rasp`) or a tracr `rasp.SOp` with the vocab and
max_seq_len it is meant for (`from_rasp`). Out: the other representation.

RASP semantics live in `raspsynth.program.evaluate`. Functions built from
the IR carry their `Fn` on the callable, so a round trip keeps library names;
a lambda from elsewhere becomes an exact table over the input values that
tracr's basis inference would give it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Hashable, Iterable

from raspsynth.program.canonical import apply_ignoring_errors, op_value_set, select_predicate
from raspsynth.program.ir import SOURCES, Fn, Op, Program, ProgramError

_FN_ATTRIBUTE = "_raspsynth_fn"


def _tagged(fn: Fn, f: Callable | None = None) -> Callable:
    """`f` (by default `fn.bind()`) carrying `fn`, for `from_rasp` to find."""
    f = f or fn.bind()
    setattr(f, _FN_ATTRIBUTE, fn)
    return f


def to_rasp(program: Program) -> object:
    """The tracr `rasp.SOp` computing `program`'s output."""
    from tracr.rasp import rasp

    built: dict[str, object] = {"tokens": rasp.tokens, "indices": rasp.indices}
    for op in program.ops:
        args = [built[i] for i in op.inputs]
        if op.kind == "map":
            expr = rasp.Map(_tagged(op.fn), args[0], simplify=False)
        elif op.kind == "sequence_map":
            expr = rasp.SequenceMap(_tagged(op.fn), args[0], args[1])
        elif op.kind == "linear_sequence_map":
            expr = rasp.LinearSequenceMap(args[0], args[1], *op.coefficients)
        elif op.kind == "select":
            if op.fn is None:
                predicate = getattr(rasp.Comparison, op.comparison)
            else:
                predicate = _tagged(op.fn, select_predicate(op))
            expr = rasp.Select(args[0], args[1], predicate)
        elif op.kind == "aggregate":
            default = 0 if op.encoding == "numerical" else None
            expr = rasp.Aggregate(args[0], args[1], default=default)
        else:
            expr = rasp.SelectorWidth(args[0])
        if op.kind != "select":
            expr = rasp.numerical(expr) if op.encoding == "numerical" else rasp.categorical(expr)
        built[op.name] = expr.named(op.name)
    return built[program.output]


def from_rasp(sop: object, vocab: Iterable[Hashable], max_seq_len: int) -> Program:
    """The IR of a tracr program. Lambdas not built by `to_rasp` become tables.

    Raises ProgramError for constructs tracr cannot compile either (constant
    SOps, selector and/or/not, rasp.length).
    """
    import networkx as nx
    from tracr.compiler import nodes, rasp_to_graph
    from tracr.rasp import rasp

    if not isinstance(sop, rasp.SOp):
        raise ProgramError(f"expected a tracr rasp.SOp, got {type(sop).__name__}")
    graph = rasp_to_graph.extract_rasp_graph(sop).graph
    sets: dict[str, frozenset] = {  # keyed by tracr label
        rasp.tokens.label: frozenset(vocab),
        rasp.indices.label: frozenset(range(max_seq_len)),
    }
    # Op names: the expression's name where it is unique in the program, else
    # tracr's label (name plus a global id), which always is.
    exprs = [graph.nodes[label][nodes.EXPR] for label in nx.topological_sort(graph)]
    name_counts = Counter(e.name for e in exprs)
    names = {
        e.label: e.name if name_counts[e.name] == 1 and e.name not in SOURCES else e.label for e in exprs
    }
    ops: list[Op] = []
    for expr in exprs:
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            continue
        op = _op_from_expr(expr, sets, rasp)  # named by labels, like `sets`
        sets[op.name] = op_value_set(op, [sets[i] for i in op.inputs], max_seq_len)
        ops.append(dataclasses.replace(op, name=names[op.name], inputs=tuple(names[i] for i in op.inputs)))
    return Program(tuple(ops), names[sop.label])


def _op_from_expr(expr: object, sets: dict[str, frozenset], rasp: object) -> Op:
    if isinstance(expr, rasp.Select):
        inputs = (expr.keys.label, expr.queries.label)
        if isinstance(expr.predicate, rasp.Comparison):
            return Op("select", expr.label, inputs, comparison=expr.predicate.name)
        predicate = _fn_of(expr.predicate, [sets[i] for i in inputs], boolean=True)
        return Op("select", expr.label, inputs, fn=predicate)
    if not isinstance(expr, rasp.SOp):
        raise ProgramError(f"{type(expr).__name__} ({expr.label}) has no IR form: tracr cannot compile it")
    encoding = "numerical" if rasp.is_numerical(expr) else "categorical"
    if isinstance(expr, rasp.Map):
        return Op("map", expr.label, (expr.inner.label,), encoding, _fn_of(expr.f, [sets[expr.inner.label]]))
    if isinstance(expr, rasp.LinearSequenceMap):
        inputs = (expr.fst.label, expr.snd.label)
        return Op(
            "linear_sequence_map", expr.label, inputs, encoding, coefficients=(expr.fst_fac, expr.snd_fac)
        )
    if isinstance(expr, rasp.SequenceMap):
        inputs = (expr.fst.label, expr.snd.label)
        return Op("sequence_map", expr.label, inputs, encoding, _fn_of(expr.f, [sets[i] for i in inputs]))
    if isinstance(expr, rasp.Aggregate):
        return Op("aggregate", expr.label, (expr.selector.label, expr.sop.label), encoding)
    if isinstance(expr, rasp.SelectorWidth):
        return Op("selector_width", expr.label, (expr.selector.label,), encoding)
    raise ProgramError(f"{type(expr).__name__} ({expr.label}) has no IR form: tracr cannot compile it")


def _fn_of(f: Callable, domains: list[frozenset], boolean: bool = False) -> Fn:
    """The Fn of a callable: its own if `to_rasp` tagged it, else its table on
    `domains`. A predicate (`boolean`) is tabulated as tracr reads it: truthy
    or not, an error counting as not selected."""
    tagged = getattr(f, _FN_ATTRIBUTE, None)
    if tagged is not None:
        return tagged
    if len(domains) == 1:
        table = {x: apply_ignoring_errors(f, x) for x in domains[0]}
    else:
        table = {(x, y): apply_ignoring_errors(f, x, y) for x in domains[0] for y in domains[1]}
    if boolean:
        return Fn.from_table({k: bool(v) for k, v in table.items()}, len(domains))
    return Fn.from_table({k: v for k, v in table.items() if v is not None}, len(domains))
