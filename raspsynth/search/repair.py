"""Repair: local edits, best first, until a candidate matches the model.

In: a candidate `Program`, the `Model`, the probe inputs, a deadline and,
when the residual structure was read, the `Decompiled` reading, from which
the model's intermediate values on the screening inputs are taken
(`observe.observed_values`). Out: `RepairOutcome`, the best program found,
its verification and the edits that led there.

Each round finds where to edit: the first op whose traced values differ from
the model's intermediate values (`first_disagreement`), else, without
observations, every op from the least confident. At that op it proposes:
- a function read from what the model computes there (input values traced
  through the candidate, output values observed at the op, or the model's
  outputs for the output op): the library function that equals it, else the
  exact table; LinearSequenceMap coefficients solved by Z3 as integers;
- every library function of the op's arity;
- every comparison, then every library predicate (`q == k + 1`, ...), for
  the Select feeding an Aggregate or SelectorWidth;
- every other SOp of the same encoding as an operand;
- deleting the op (its users read one of its inputs instead).
Edits are scored by how many screening inputs the edited program's RASP
semantics get right against the model's outputs (cheap, no compile), and
expanded best first up to `config.max_edits` deep; a program that gets
(nearly) every screening input right is compiled and verified on all probe
inputs. The knobs are the `SearchConfig`'s; with `config.z3` off,
coefficients are not solved.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from collections.abc import Hashable, Iterator, Sequence

import numpy as np

from raspsynth.program.evaluate import trace
from raspsynth.program.ir import (
    PREDICATE_ARGUMENTS,
    PREDICATES,
    SOURCES,
    Fn,
    Op,
    Program,
    ProgramError,
    library_predicates,
)
from raspsynth.search.config import SearchConfig
from raspsynth.search.observe import (
    Observed,
    agrees,
    first_disagreement,
    first_disagreement_in,
    observed_values,
    rasp_outputs,
)
from raspsynth.search.verify import Verification, verify
from raspsynth.symbolic.decompile import Decompiled, match_library
from raspsynth.symbolic.value_semantics import SOLVER_TIMEOUT_MS, library_functions
from raspsynth.tracr_bridge.model import Model, Token

COEFFICIENT_BOUND = 8  # |a|, |b| searched by Z3 for a LinearSequenceMap


@dataclasses.dataclass(frozen=True)
class RepairOutcome:
    program: Program
    verification: Verification | None  # None: nothing reached full verification
    edits: tuple[str, ...]
    screened: int  # edited programs scored on the screening inputs
    timed_out: bool


@dataclasses.dataclass(frozen=True)
class _Screen:
    """The screening inputs, the model's outputs on them and, when the
    residual structure was read, its intermediate values on them too."""

    inputs: list
    expected: list
    observed: Observed | None = None

    def score(self, program: Program) -> tuple[float, float]:
        """(share of observed ops matched before the first disagreement,
        share of screening inputs whose output is right); higher is better.
        With intermediate values the search follows the model op by op."""
        try:
            traces = [trace(program, xs) for xs in self.inputs]
        except (KeyError, TypeError):  # a table met a value outside its domain; unordered values
            return (0.0, 0.0)
        progress = 1.0
        if self.observed is not None:
            found = first_disagreement_in(program, self.observed, traces)
            if found is not None:
                names = [op.name for op in program.ops if op.name in self.observed]
                progress = names.index(found[0]) / len(names) + (1 - found[1]) / len(names)
        numerical = program.encoding(program.output) == "numerical"
        right = sum(
            len(w) == len(t[program.output])
            and all(agrees(a, b, numerical) for a, b in zip(w, t[program.output]))
            for w, t in zip(self.expected, traces)
        )
        return (progress, right / len(self.inputs))


def screening_inputs(inputs: Sequence[Sequence[Token]], seed: int, n: int) -> list:
    """Every probe of length <= 2, then a seeded sample of the rest, n in all."""
    short = [xs for xs in inputs if len(xs) <= 2]
    rest = [xs for xs in inputs if len(xs) > 2]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rest), size=min(max(n - len(short), 0), len(rest)), replace=False)
    return short[:n] + [rest[i] for i in sorted(picked.tolist())]


def repair(
    program: Program,
    model: Model,
    inputs: Sequence[Sequence[Token]],
    deadline: float,
    decompiled: Decompiled | None = None,
    confidence: dict[str, float] | None = None,
    seed: int = 0,
    config: SearchConfig = SearchConfig(),
) -> RepairOutcome:
    """Best-first local edits of `program` until it verifies or time runs out.
    With `decompiled` (the model's residual structure), edits follow the
    model's intermediate values on the screening inputs."""
    screen_in = screening_inputs(inputs, seed, config.screen_inputs)
    observed = observed_values(model, decompiled, screen_in) if decompiled is not None else None
    screen = _Screen(screen_in, rasp_outputs(model, screen_in), observed)
    confidence = confidence or {}
    counter = itertools.count()
    start_score = screen.score(program)
    frontier = [(_negated(start_score), 0, next(counter), program, ())]
    seen = {program.dumps()}
    best = (start_score, program, ())
    screened = 0
    while frontier:
        if time.monotonic() > deadline:
            return RepairOutcome(best[1], None, best[2], screened, timed_out=True)
        neg_score, depth, _, current, edits = heapq.heappop(frontier)
        # RASP semantics and tracr part ways on a few undefined positions, so
        # a nearly right screen (or all intermediate values right) is enough
        # to pay for the full check.
        if -neg_score[0] == 1.0 or -neg_score[1] >= config.verify_screen_score:
            result = verify(current, model, inputs, deadline, seed)
            if result.verified:
                return RepairOutcome(current, result, edits, screened, timed_out=False)
        if depth >= config.max_edits:
            continue
        children = []
        for description, edited in _edits(current, confidence, screen, config):
            key = edited.dumps()
            if key in seen:
                continue
            seen.add(key)
            screened += 1
            children.append((screen.score(edited), description, edited))
            if time.monotonic() > deadline:
                break
        children.sort(key=lambda c: _negated(c[0]))
        for score, description, edited in children[: config.branching]:
            if score > best[0]:
                best = (score, edited, edits + (description,))
            heapq.heappush(
                frontier, (_negated(score), depth + 1, next(counter), edited, edits + (description,))
            )
    return RepairOutcome(best[1], None, best[2], screened, timed_out=False)


def _negated(score: tuple[float, float]) -> tuple[float, float]:
    return (-score[0], -score[1])


# -- edits --------------------------------------------------------------------


def _targets(program: Program, confidence: dict[str, float], screen: _Screen) -> list[str]:
    """Ops to edit, most suspect first."""
    if screen.observed is not None:
        found = first_disagreement(program, screen.observed, screen.inputs)
        if found is not None:
            return [found[0]]
    value_ops = [op for op in program.ops if op.kind != "select"]
    order = sorted(
        range(len(value_ops)), key=lambda i: (confidence.get(value_ops[i].name, 1.0), -i)
    )  # least confident, then latest (closest to the output) first
    return [value_ops[i].name for i in order]


def _edits(
    program: Program, confidence: dict[str, float], screen: _Screen, config: SearchConfig
) -> Iterator[tuple[str, Program]]:
    for target in _targets(program, confidence, screen):
        op = program.op(target)
        yield from _function_edits(program, op, screen, config)
        yield from _predicate_edits(program, op)
        yield from _operand_edits(program, op)
        yield from _deletions(program, op)


def _replace(program: Program, old: Op, new: Op) -> Program | None:
    try:
        return Program(tuple(new if op.name == old.name else op for op in program.ops), program.output)
    except ProgramError:
        return None


def _function_edits(program, op, screen: _Screen, config: SearchConfig):
    if op.kind not in ("map", "sequence_map", "linear_sequence_map"):
        return
    rows = _observed_rows(program, op, screen)
    if op.kind == "linear_sequence_map":
        solvable = rows and config.z3
        coefficients = solve_linear_coefficients(rows, config.solver_timeout_ms) if solvable else None
        if coefficients is not None and coefficients != op.coefficients:
            edited = _replace(program, op, dataclasses.replace(op, coefficients=coefficients))
            if edited is not None:
                yield f"{op.name}: coefficients {coefficients} solved from observed values", edited
        return
    arity = len(op.inputs)
    if rows:
        numerical = op.encoding == "numerical"
        fn = match_library(rows, numerical) or Fn.from_table(
            {k if arity > 1 else k[0]: v for k, v in rows.items()}, arity
        )
        if fn != op.fn:
            edited = _replace(program, op, dataclasses.replace(op, fn=fn))
            if edited is not None:
                yield f"{op.name}: function {fn.describe()} read from observed values", edited
    for fn in library_functions(arity):
        if fn != op.fn:
            edited = _replace(program, op, dataclasses.replace(op, fn=fn))
            if edited is not None:
                yield f"{op.name}: function {fn.describe()}", edited


def _observed_rows(program, op, screen: _Screen) -> dict[tuple, Hashable] | None:
    """Input values (traced through the candidate) -> the value the model has
    for `op`, when that is one function; None when it is not observable or
    contradicts itself (an upstream op is wrong too)."""
    if screen.observed is not None and op.name in screen.observed:
        outputs = screen.observed[op.name]
    elif op.name == program.output:
        outputs = screen.expected
    else:
        return None
    rows: dict[tuple, Hashable] = {}
    for xs, out_row in zip(screen.inputs, outputs):
        values = trace(program, xs)
        for position, out in enumerate(out_row):
            args = tuple(values[i][position] for i in op.inputs)
            if out is None or None in args:
                continue
            if args in rows and not agrees(rows[args], out, numerical=False):
                return None
            rows.setdefault(args, out)
    return rows or None


def solve_linear_coefficients(
    rows: dict[tuple, Hashable], timeout_ms: int = SOLVER_TIMEOUT_MS
) -> tuple[float, float] | None:
    """Integers a, b (|a|, |b| <= COEFFICIENT_BOUND) with a*x + b*y = z on every
    observed row, by Z3; None when there are none."""
    import z3

    ctx = z3.Context()
    a, b = z3.Int("a", ctx), z3.Int("b", ctx)
    solver = z3.Solver(ctx=ctx)
    solver.set("timeout", timeout_ms)
    for coefficient in (a, b):
        solver.add(coefficient >= -COEFFICIENT_BOUND, coefficient <= COEFFICIENT_BOUND)
    for (x, y), z in rows.items():
        values = [z3.RealVal(float(v), ctx) for v in (x, y, z)]
        solver.add(z3.ToReal(a) * values[0] + z3.ToReal(b) * values[1] == values[2])
    if solver.check() != z3.sat:
        return None
    found = solver.model()
    return (found.eval(a).as_long(), found.eval(b).as_long())


def _predicate_edits(program, op):
    """The select feeding `op` with each other comparison, then each library predicate."""
    if op.kind not in ("aggregate", "selector_width"):
        return
    select = program.op(op.inputs[0])
    for comparison in PREDICATES:
        if comparison != select.comparison:
            edited = _replace(program, select, dataclasses.replace(select, comparison=comparison, fn=None))
            if edited is not None:
                yield f"{select.name}: comparison {comparison}", edited
    for predicate in library_predicates():
        if predicate != select.fn:
            edited = _replace(program, select, dataclasses.replace(select, comparison=None, fn=predicate))
            if edited is not None:
                yield f"{select.name}: predicate {predicate.source(PREDICATE_ARGUMENTS)}", edited


def _available(program: Program, before: str) -> list[tuple[str, str]]:
    """(name, encoding) of the SOps an op placed at `before` may read."""
    out = [("tokens", "categorical"), ("indices", "categorical")]
    for op in program.ops:
        if op.name == before:
            break
        if op.kind != "select":
            out.append((op.name, op.encoding))
    return out


def _operand_edits(program, op):
    edited_ops = [op]
    if op.kind in ("aggregate", "selector_width"):
        edited_ops.append(program.op(op.inputs[0]))  # the select's keys and queries
    for target in edited_ops:
        for slot, current in enumerate(target.inputs):
            if target.kind in ("aggregate", "selector_width") and slot == 0:
                continue  # the selector itself
            encoding = program.encoding(current)
            for name, other_encoding in _available(program, target.name):
                if name == current or other_encoding != encoding:
                    continue
                inputs = target.inputs[:slot] + (name,) + target.inputs[slot + 1 :]
                edited = _replace(program, target, dataclasses.replace(target, inputs=inputs))
                if edited is not None:
                    yield f"{target.name}: operand {slot} {current} -> {name}", edited


def _deletions(program, op):
    for source in op.inputs:
        if source not in SOURCES:
            source_op = program.op(source)
            if source_op.kind == "select" or source_op.encoding != op.encoding:
                continue
        elif op.encoding != "categorical":
            continue
        output = source if program.output == op.name else program.output
        if output in SOURCES:
            continue
        ops = tuple(
            dataclasses.replace(other, inputs=tuple(source if i == op.name else i for i in other.inputs))
            for other in program.ops
            if other.name != op.name
        )
        try:
            edited = Program(ops, output)
        except ProgramError:
            continue
        yield f"{op.name}: deleted, users read {source}", edited
