"""Value semantics: which value each categorical dimension stands for.

In: a `Model`, its `Structure` and component tables. Out: `ValueAssignment`,
a value for every dimension of every categorical block, and for each block
how it was found.

Some values are fixed by the weights and spec ("read"): tokens and indices by
the embeddings, the output block by the unembed's columns, a SelectorWidth's
dimensions by the width they decode, and an Aggregate's dimensions by the
value dimensions it copies (in both directions). The values of an
intermediate categorical SOp are not: any relabelling gives the same weights.
For those, a labelling is chosen in this order:
1. a library function of the input values that splits the inputs exactly as
   the table does ("library"), checked against every selection predicate it
   takes part in, which must stay one of tracr's comparisons;
2. otherwise 0, 1, 2, ... ("arbitrary");
3. if some predicate is then no comparison: an arbitrary block a head
   compares with itself (a sort's keys) is relabelled by rank ("ranked"),
   and otherwise every chosen block is relabelled jointly by Z3 so that all
   predicates are comparisons, keeping the labels of steps 1-2 where it can
   ("solver"); skipped when `solver_timeout_ms` is None (the ablation
   without Z3).
A predicate that no comparison gives under the final values, over values
that are read (a shift of indices) or that Z3 could not relabel, is a custom
predicate (`predicate_of`): a library one such as `q == k + 1`, or its table.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
import time
from collections.abc import Hashable

import numpy as np

from raspsynth.errors import NotTracrStructured, check_deadline
from raspsynth.program.canonical import apply_ignoring_errors
from raspsynth.program.functions import LIBRARY
from raspsynth.program.ir import PREDICATES, Fn, library_predicates
from raspsynth.symbolic.component_tables import AttentionTable, MlpTable
from raspsynth.symbolic.residual_structure import Structure
from raspsynth.tracr_bridge.model import Model

# Z3's time limit per block, in milliseconds.
SOLVER_TIMEOUT_MS = 2000
# Select-table entries times comparisons beyond which the joint relabelling
# is not tried: building that many Z3 terms in Python takes longer than any
# budget (a sort over 30 tokens at length 10: 720k terms, 80 s to build).
MAX_SOLVER_TERMS = 100_000


@dataclasses.dataclass(frozen=True)
class ValueAssignment:
    values: dict[int, Hashable]  # dimension -> value, for categorical dimensions
    how: dict[str, str]  # block -> "read" | "library" | "solver" | "ranked" | "arbitrary"


@functools.cache
def library_functions(arity: int) -> tuple[Fn, ...]:
    """Every library function of `arity` with parameters in its sampled range
    (Select predicates excluded: see `library_predicates`)."""
    fns = []
    for entry in LIBRARY.values():
        if entry.arity != arity or entry.predicate:
            continue
        low, high = entry.param_range
        for params in itertools.product(range(low, high + 1), repeat=len(entry.params)):
            fns.append(Fn(entry.name, tuple(params)))
    return tuple(fns)


def predicate_of(selects: dict, values: dict[int, Hashable]) -> Fn:
    """A custom predicate giving `selects` ((query dim, key dim) -> chosen)
    under `values`: the first library predicate that does, else the exact
    table over (key value, query value). Call it where no comparison does."""
    pairs = {(values[k], values[q]): chosen for (q, k), chosen in selects.items()}
    exact = [fn for fn, fit in zip(library_predicates(), predicate_fit(selects, values)) if fit == 1.0]
    return exact[0] if exact else Fn.from_table(pairs, 2)


def predicate_fit(selects: dict, values: dict[int, Hashable]) -> list[float]:
    """Each library predicate (`library_predicates()`, in order) -> the
    fraction of `selects` ((query dim, key dim) -> chosen) it gives under
    `values`. A predicate that reads no query or no key fits none."""
    if any(q is None or k is None for q, k in selects):
        return [0.0] * len(library_predicates())
    pairs = {(values[k], values[q]): chosen for (q, k), chosen in selects.items()}
    fits = []
    for fn in library_predicates():
        f = fn.bind()
        agree = sum(bool(apply_ignoring_errors(f, k, q)) == chosen for (k, q), chosen in pairs.items())
        fits.append(agree / max(1, len(pairs)))
    return fits


def comparison_of(selects: dict, values: dict[int, Hashable]) -> str | None:
    """The first of tracr's comparisons that gives `selects` under `values`,
    or None. A predicate that reads no query or no key is constant."""
    return next((name for name, fit in comparison_fit(selects, values).items() if fit == 1.0), None)


def comparison_fit(selects: dict, values: dict[int, Hashable]) -> dict[str, float]:
    """Each of tracr's comparisons -> the fraction of `selects` it gives under
    `values`. Only TRUE and FALSE fit a predicate that reads no query or no key."""
    if not selects:
        return dict.fromkeys(PREDICATES, 1.0)
    fit = dict.fromkeys(PREDICATES, 0.0)
    if any(q is None or k is None for q, k in selects):
        chosen = list(selects.values())
        fit["TRUE"], fit["FALSE"] = chosen.count(True) / len(chosen), chosen.count(False) / len(chosen)
        return fit
    for name, predicate in PREDICATES.items():
        try:
            agree = sum(bool(predicate(values[k], values[q])) == chosen for (q, k), chosen in selects.items())
        except TypeError:  # values that do not order (strings against numbers)
            continue
        fit[name] = agree / len(selects)
    return fit


def assign_values(
    model: Model,
    structure: Structure,
    tables: dict,
    solver_timeout_ms: int | None = SOLVER_TIMEOUT_MS,
    deadline: float | None = None,
) -> ValueAssignment:
    values: dict[int, Hashable] = {}
    how: dict[str, str] = {}
    for block in structure.blocks:
        if block.values is not None and block.encoding == "categorical":
            values.update(zip(block.dims, block.values))
            how[block.name] = "read"
    output = structure.block(structure.output)
    if output.encoding == "categorical":
        for d in output.dims:
            values[d] = model.spec.output_values[int(np.argmax(model.unembed[d]))]
        how[output.name] = "read"
    for component in structure.components:
        table = tables[component.name]
        if isinstance(table, AttentionTable) and table.widths:
            values.update(table.widths)
            how[component.name] = "read"
    _propagate_copies(structure, tables, values, how)
    for component in structure.components:
        block = structure.block(component.name)
        if block.encoding != "categorical" or block.name in how:
            continue
        labels, method = _label_block(structure, tables, component, values)
        values.update(labels)
        how[block.name] = method
        _propagate_copies(structure, tables, values, how)
    for block in structure.blocks:
        if block.encoding == "categorical" and not set(block.dims) <= values.keys():
            raise NotTracrStructured(f"no value for some dimensions of {block.name}")
    for component in structure.components:
        table = tables[component.name]
        if not isinstance(table, AttentionTable):
            continue
        if not table.compared_dims <= values.keys():
            # tracr's Select compares categorical values only.
            raise NotTracrStructured(f"{component.name} compares dimensions that hold no categorical value")
    if solver_timeout_ms is not None:
        _repair_predicates(structure, tables, values, how, solver_timeout_ms, deadline)
    return ValueAssignment(values, how)


def _propagate_copies(structure: Structure, tables: dict, values: dict, how: dict) -> None:
    changed = True
    while changed:
        changed = False
        for component in structure.components:
            table = tables[component.name]
            if not (isinstance(table, AttentionTable) and table.copies):
                continue
            for source, target in table.copies.items():
                if source in values and target not in values:
                    values[target] = values[source]
                    how.setdefault(component.name, how.get(component.value, "read"))
                    changed = True
                elif target in values and source not in values:
                    values[source] = values[target]
                    how.setdefault(component.value, how.get(component.name, "read"))
                    changed = True


def _input_values(structure: Structure, key: tuple, inputs: tuple, values: dict) -> tuple | None:
    out = []
    for name, k in zip(inputs, key):
        if structure.block(name).encoding == "numerical":
            out.append(int(k) if float(k).is_integer() else k)
        elif k in values:
            out.append(values[k])
        else:
            return None
    return tuple(out)


def _label_block(structure: Structure, tables: dict, component, values: dict) -> tuple[dict, str]:
    block = structure.block(component.name)
    table = tables[component.name]
    if isinstance(table, MlpTable) and component.inputs:
        groups: dict[int, list[tuple]] = {d: [] for d in block.dims}
        for key, out_dim in table.rows.items():
            args = _input_values(structure, key, component.inputs, values)
            if args is None:
                groups = {}
                break
            groups[out_dim].append(args)
        if groups:
            for fn in library_functions(len(component.inputs)):
                labels = _labels_from(fn, groups)
                if labels is not None and _predicates_hold(structure, tables, {**values, **labels}):
                    return labels, "library"
            # Number dimensions by the first input that reaches them, not by
            # their place in the residual, so a permuted model reads the same.
            first = {d: min(map(_order_key, args)) for d, args in groups.items() if args}
            order = sorted(block.dims, key=lambda d: (d not in first, first.get(d, ()), d))
            return {d: i for i, d in enumerate(order)}, "arbitrary"
    return {d: i for i, d in enumerate(block.dims)}, "arbitrary"


def _order_key(value) -> tuple:
    """A total order over mixed values (numbers before everything else)."""
    if isinstance(value, tuple):
        return tuple(_order_key(v) for v in value)
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return (0, float(value), type(value).__name__)
    return (1, 0.0, repr(value))


def _labels_from(fn: Fn, groups: dict[int, list[tuple]]) -> dict[int, Hashable] | None:
    """Labels if `fn` is constant on each output dimension's inputs and
    different across dimensions."""
    f = fn.bind()
    labels = {}
    for dim, arg_list in groups.items():
        # Keyed by type too: 0 and False are equal in Python but not as labels.
        results = {(type(r), r): r for r in (apply_ignoring_errors(f, *args) for args in arg_list)}
        if len(results) != 1 or None in results.values():
            return None
        labels[dim] = next(iter(results.values()))
    if len({repr(v) for v in labels.values()}) != len(labels) or len(set(labels.values())) != len(labels):
        return None
    return labels


def _predicates_hold(structure: Structure, tables: dict, values: dict) -> bool:
    for component in structure.components:
        table = tables[component.name]
        if not isinstance(table, AttentionTable):
            continue
        if table.compared_dims <= values.keys() and comparison_of(table.selects, values) is None:
            return False
    return True


def _repair_predicates(
    structure: Structure, tables: dict, values: dict, how: dict, timeout_ms: int, deadline: float | None
) -> None:
    """Relabel the chosen (not read) blocks jointly, by Z3, so that every
    predicate is one of tracr's comparisons; keep chosen labels where possible."""
    attention = [c for c in structure.components if isinstance(tables[c.name], AttentionTable)]
    failing = [c for c in attention if comparison_of(tables[c.name].selects, values) is None]
    for component in failing:
        _rank_labels(structure, tables, component, values, how)
    failing = [c for c in attention if comparison_of(tables[c.name].selects, values) is None]
    if not failing:
        return
    free = [b for b in structure.blocks if b.encoding == "categorical" and how.get(b.name) != "read"]
    for integer in (True, False):  # integers read best; reals fit values between others
        labels = _solve_jointly(integer, structure, tables, free, values, timeout_ms, deadline)
        if labels is not None:
            values.update(labels)
            for block in free:
                how[block.name] = "solver"
            return


def _rank_labels(structure: Structure, tables: dict, component, values: dict, how: dict) -> None:
    """Relabel an arbitrarily labelled block that a head compares with itself
    (a sort's keys) by rank, when that makes the head's predicate an order.

    A query's label becomes the number of keys it selects: under LT that is
    its rank, under GT its rank from the top, and LEQ and GEQ count one more.
    Labels travel with the values Aggregates copy; the new labels are kept
    only if every predicate that was a comparison still is one. This is the
    joint relabelling's answer for one self-comparison, found without Z3
    (whose constraints for a 300-value sort would take minutes to build)."""
    query, key = component.inputs
    if query is None or query != key or how.get(query) != "arbitrary":
        return
    selects = tables[component.name].selects
    counts: dict[int, int] = {}
    for (q, _), chosen in selects.items():
        counts[q] = counts.get(q, 0) + bool(chosen)
    if len(set(counts.values())) != len(counts):
        return  # ties: not a strict order of the block's values
    roots = _copy_roots(structure, tables)
    copies_of: dict[int, list[int]] = {}
    for dim, root in roots.items():
        copies_of.setdefault(root, []).append(dim)
    relabelled = dict(values)
    for dim, count in counts.items():
        root = roots.get(dim, dim)
        for twin in [root, *copies_of.get(root, [])]:
            relabelled[twin] = count
    before = {c.name for c in structure.components if _is_comparison(tables[c.name], values)}
    if all(_is_comparison(tables[name], relabelled) for name in before | {component.name}):
        values.update(relabelled)
        how[query] = "ranked"


def _is_comparison(table, values: dict) -> bool:
    return isinstance(table, AttentionTable) and comparison_of(table.selects, values) is not None


def _copy_roots(structure: Structure, tables: dict) -> dict[int, int]:
    """Each dimension an Aggregate writes -> the dimension its value was
    first copied from (in layer order): dimensions with one root carry one
    value."""
    roots: dict[int, int] = {}
    for component in structure.components:
        table = tables[component.name]
        if isinstance(table, AttentionTable) and table.copies:
            for source, target in table.copies.items():
                roots[target] = roots.get(source, source)
    return roots


def _one_comparison_for_all(pairs: list, ctx):
    """Z3's "one comparison decides every (query, key) pair as the table does",
    from (query term, key term, query value, key value, chosen) per pair, a
    value being None where the term is a variable.

    Written out plainly this is Or over comparisons of And over pairs, one
    term per pair; building those terms through Z3's Python API took 45 of
    50 s on a 224-dimensional model (interpbench case_126, rotated). So the
    pairs are taken once per pair of terms, a comparison that no labelling
    can fit is left out before any term is built (`_SelectionPattern`),
    an order comparison over every query-key pair is a chain of neighbouring
    classes (`_order_chain`: O(queries + keys) atoms, not their product), a
    pair of two read values is decided here, and an atom is used as it is or
    negated, never compared with a Boolean. The formula is equivalent (the
    chain's bounds are existential: any labelling that fits has them).
    """
    import z3

    grid: dict = {}
    for q, k, q_value, k_value, chosen in pairs:
        key = (q.get_id(), k.get_id())
        if grid.setdefault(key, (q, k, q_value, k_value, chosen))[4] != chosen:
            return z3.BoolVal(False, ctx)  # one pair of labels both selected and not
    pattern = _SelectionPattern.of(list(grid), [p[4] for p in grid.values()])
    terms = {}
    for q, k, *_ in grid.values():
        terms[q.get_id()], terms[k.get_id()] = q, k
    options = []
    for name in pattern.comparisons_that_can_fit():
        if name in ORDER_COMPARISONS and pattern.complete:
            options.append(_order_chain(name, pattern, terms, ctx))
            continue
        op, atoms, possible = PREDICATES[name], [], True
        for q, k, q_value, k_value, chosen in grid.values():
            atom = op(k_value, q_value) if q_value is not None and k_value is not None else op(k, q)
            if isinstance(atom, z3.BoolRef):
                atoms.append(atom if chosen else z3.Not(atom, ctx))
            elif bool(atom) != chosen:  # decided: this comparison cannot be the one
                possible = False
                break
        if possible:
            options.append(z3.And(*atoms, ctx) if atoms else z3.BoolVal(True, ctx))
    return z3.Or(*options, ctx) if options else z3.BoolVal(False, ctx)


ORDER_COMPARISONS = ("LT", "LEQ", "GT", "GEQ")


@dataclasses.dataclass(frozen=True)
class _SelectionPattern:
    """A select table over term pairs as a 0/1 matrix: `taken[i, j]` where
    query `rows[i]` selects key `cols[j]`, `left` where it does not (both 0
    where the pair is absent)."""

    rows: tuple
    cols: tuple
    taken: np.ndarray
    left: np.ndarray

    @staticmethod
    def of(keys: list[tuple], chosen: list[bool]) -> _SelectionPattern:
        rows = {q: i for i, q in enumerate(dict.fromkeys(q for q, _ in keys))}
        cols = {k: j for j, k in enumerate(dict.fromkeys(k for _, k in keys))}
        taken = np.zeros((len(rows), len(cols)), dtype=np.int64)
        left = np.zeros_like(taken)
        for (q, k), selected in zip(keys, chosen):
            (taken if selected else left)[rows[q], cols[k]] = 1
        return _SelectionPattern(tuple(rows), tuple(cols), taken, left)

    @property
    def complete(self) -> bool:
        """Every query paired with every key."""
        return bool((self.taken + self.left).all())

    def comparisons_that_can_fit(self) -> list[str]:
        """The comparisons some labelling could make select exactly this
        pattern: a necessary test, so leaving the others out changes
        nothing. Distinct terms of one side are distinct labels (a block's
        values are distinct), so equality selects at most one key per query
        and one query per key (inequality: leaves out at most one), and an
        order comparison selects nested sets: no two queries q1, q2 and keys
        k1, k2 with q1 taking k1 but not k2 and q2 taking k2 but not k1."""
        taken, left = self.taken, self.left
        fit = {"TRUE": not left.any(), "FALSE": not taken.any()}
        fit["EQ"] = taken.sum(0).max() <= 1 and taken.sum(1).max() <= 1
        fit["NEQ"] = left.sum(0).max() <= 1 and left.sum(1).max() <= 1
        crossing = bool(((taken @ left.T > 0) & (left @ taken.T > 0)).any())
        for name in ORDER_COMPARISONS:
            fit[name] = not crossing
        return [name for name in PREDICATES if fit[name]]


def _order_chain(name: str, pattern: _SelectionPattern, terms: dict, ctx):
    """Z3's "order comparison `name` selects exactly `pattern`", for a complete
    pattern with nested selections (no crossing), in O(queries + keys) atoms.

    Keys selected by the same queries form a class; nested selections order
    the classes from the lowest key up (for LT and LEQ the lowest are the
    most selected, for GT and GEQ the least), and each query sits in one gap
    of that chain: above the classes it takes (LT, LEQ) or leaves (GT, GEQ),
    below the rest. So: each class lies within bounds [low, high], and each
    query lies between the high of the class under it and the low of the
    class over it, strictly where the comparison is strict. Any labelling
    that fits the pattern satisfies this with low and high the class's least
    and greatest key. Any solution fits the pattern: two neighbouring classes
    differ, so some query lies between them, which orders the chain, and
    every key of a lower class then lies below every query above it.
    `terms` maps a term id to its Z3 term."""
    import z3

    takes_low = name in ("LT", "LEQ")  # the keys a query selects lie below it
    strict_below = name in ("LT", "GEQ")  # key < query on the chain's lower side
    counts = pattern.taken.sum(0).tolist()
    levels = sorted(set(counts), reverse=takes_low)
    level_of = {count: i for i, count in enumerate(levels)}
    classes: list[list] = [[] for _ in levels]
    for j, count in enumerate(counts):
        classes[level_of[count]].append(terms[pattern.cols[j]])
    sort = classes[0][0].sort()
    atoms, bounds = [], []
    for members in classes:
        if len(members) == 1:
            bounds.append((members[0], members[0]))
            continue
        low, high = z3.FreshConst(sort, "low"), z3.FreshConst(sort, "high")
        atoms += [low <= member for member in members] + [member <= high for member in members]
        bounds.append((low, high))
    # A query's gap: the number of classes below it, read from any key of each class.
    first_key = [counts.index(count) for count in levels]
    for i, q in enumerate(pattern.rows):
        taken = [bool(pattern.taken[i, j]) for j in first_key]
        gap = sum(taken) if takes_low else len(taken) - sum(taken)
        query = terms[q]
        if gap > 0:
            high = bounds[gap - 1][1]
            atoms.append(high < query if strict_below else high <= query)
        if gap < len(bounds):
            low = bounds[gap][0]
            atoms.append(query <= low if strict_below else query < low)
    return z3.And(*atoms, ctx) if atoms else z3.BoolVal(True, ctx)


def _solve_jointly(
    integer: bool,
    structure: Structure,
    tables: dict,
    free: list,
    values: dict,
    timeout_ms: int,
    deadline: float | None = None,
) -> dict | None:
    import z3

    constraint_pairs = sum(
        len(tables[c.name].selects)
        for c in structure.components
        if isinstance(tables[c.name], AttentionTable)
    )
    if constraint_pairs * len(PREDICATES) > MAX_SOLVER_TERMS:
        return None  # building the constraints alone would take minutes (sorts over many keys)

    # An Aggregate's dimensions carry the values it copies: one variable for both.
    same = _copy_roots(structure, tables)

    # Variables are named and ordered by block and current label, never by
    # residual position, so Z3 answers a permuted model with the same labels.
    def label_key(d):
        return (_order_key(values.get(d)), d)

    free_dims = [d for block in free for d in sorted(block.dims, key=label_key)]
    block_of = {d: block.name for block in free for d in block.dims}
    root = {d: same.get(d, d) for d in free_dims}
    # A fresh context per solve: Z3's answers otherwise depend on what earlier
    # solves left in the global one, and synthesis must be deterministic.
    ctx = z3.Context()
    sort = z3.IntSort(ctx) if integer else z3.RealSort(ctx)

    def constant(value):
        return z3.IntVal(int(value), ctx) if integer else z3.RealVal(value, ctx)

    variables = {
        d: z3.Const(f"{block_of.get(root[d], block_of[d])}={values.get(root[d])!r}", sort) for d in free_dims
    }

    def read_value(d):  # a dimension that is no variable: its value as Z3 compares it
        value = values.get(d)
        if isinstance(value, (bool, int, np.integer)):
            return int(value)
        if isinstance(value, float) and not integer:
            return value
        return None

    def operand(d):
        """(Z3 term, read value): the value None for a variable, the term None
        for a value Z3 cannot order."""
        if d in variables:
            return variables[d], None
        value = read_value(d)
        return (None if value is None else constant(value)), value

    solver = z3.Optimize(ctx=ctx)
    if deadline is not None:
        timeout_ms = max(1, min(timeout_ms, int(1000 * (deadline - time.monotonic()))))
    solver.set("timeout", timeout_ms)
    for block in free:
        if len(block.dims) > 1:
            solver.add(z3.Distinct(*[variables[d] for d in sorted(block.dims, key=label_key)]))
    for component in structure.components:
        check_deadline(deadline)
        table = tables[component.name]
        if not isinstance(table, AttentionTable) or any(q is None or k is None for q, k in table.selects):
            continue
        ordered = sorted(
            table.selects.items(), key=lambda item: (label_key(item[0][0]), label_key(item[0][1]))
        )
        if not any(d in variables for pair in table.selects for d in pair):
            continue  # read values only: a custom predicate if no comparison, nothing to solve
        pairs = []
        for (q, k), chosen in ordered:
            (q_term, q_value), (k_term, k_value) = operand(q), operand(k)
            pairs.append((q_term, k_term, q_value, k_value, bool(chosen)))
        if any(q is None or k is None for q, k, *_ in pairs):
            if any(d in variables for pair in table.selects for d in pair):
                return None  # a free block is compared with values Z3 cannot order
            continue
        solver.add(_one_comparison_for_all(pairs, ctx))
    for d, v in variables.items():
        current = values.get(d)
        if isinstance(current, (int, np.integer)) and not isinstance(current, bool):
            solver.add_soft(v == constant(int(current)))
    check_deadline(deadline)
    # Z3's optimizer does not always honour its own timeout, nor an interrupt
    # (31 s measured on a 2 s timeout): the check runs in a thread (ctypes
    # releases the GIL) and is abandoned, interrupted, when the time is up.
    answers: list = []
    worker = threading.Thread(target=lambda: answers.append(solver.check()), daemon=True)
    worker.start()
    worker.join(timeout_ms / 1000 + 0.1)
    if worker.is_alive():
        ctx.interrupt()
        return None
    answer = answers[0] if answers else None
    if answer != z3.sat:
        return None
    model = solver.model()
    labels = {}
    for d, v in variables.items():
        value = model.eval(v, model_completion=True)
        labels[d] = value.as_long() if integer else _plain_fraction(value.as_fraction())
    return labels


def _plain_fraction(value) -> int | float:
    return int(value) if value.denominator == 1 else float(value)
