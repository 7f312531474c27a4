"""Training targets: a program's tokens in the order of its model's reading.

In: the program a model was compiled from and the model's `EncodedBlocks`.
Out: the program's token sequence with op i written for row i + 2 of the
encoding (so REF_r means the same value on both sides), or None when the
reading and the program cannot be aligned.

Alignment is by behaviour, not by names: both the program and the reading's
program are run on the same inputs, and each component is paired with the
program's op whose values partition the positions alike (equal values for a
numerical one), preferring an op of the same kind.

Each op is then written as the program has it where that agrees with the
reading: the same operands in the same order, and a function or comparison
that reproduces the component's probed table under the values the reading
gave its operands. Otherwise it is the reading's own op. That is a
relabelling the program is indifferent to (the reading labelled an
intermediate value differently), an operand the weights never read (any
choice computes the same), or a two-operand function written with its
operands the other way round (`lt2(a, b)` for `gt2(b, a)`): the target must
be what the features can tell, or it teaches guesses. Where several library
functions fit, the program's choice stays: that is the distribution's prior
the model can learn. Linear sequence maps are always the reading's.
"""

from __future__ import annotations

import numpy as np

from raspsynth.neural.block_encoding import EncodedBlocks, field
from raspsynth.neural.program_tokens import (
    TokenError,
    from_tokens,
    op_tokens,
    operands,
    to_tokens,
    token_groups,
)
from raspsynth.program.evaluate import trace
from raspsynth.program.ir import PREDICATES, SOURCES, Op, Program
from raspsynth.symbolic.value_semantics import library_functions
from raspsynth.tracr_bridge.model import Model

ALIGNMENT_INPUTS = 48


def reading_targets(program: Program, encoded: EncodedBlocks, model: Model) -> list[str] | None:
    """`program`'s tokens, op i for row i + 2 of `encoded` (the reading of
    `model`, which `program` was compiled to); None when they do not align."""
    reading = encoded.decompiled.program
    ours = [op for op in reading.ops if op.kind != "select"]
    theirs = [op for op in program.ops if op.kind != "select"]
    if len(ours) != len(theirs):
        return None
    try:
        reading_tokens = to_tokens(reading)
    except TokenError:
        return None
    match = _align(reading, ours, program, theirs, model)
    if match is None:
        return None
    refs = {name: i for i, name in enumerate(SOURCES)}
    refs |= {theirs[j].name: i + len(SOURCES) for i, j in enumerate(match)}
    groups = token_groups(reading_tokens)
    tokens = ["BOS"]
    for i, j in enumerate(match):
        row = encoded.features[i + len(SOURCES)]
        group = _program_group(theirs[j], program, refs, row, groups[i])
        tokens += group if group is not None else groups[i]
    tokens.append("EOS")
    try:
        from_tokens(tokens)
    except TokenError:
        return None
    return tokens


def _program_group(
    op: Op, program: Program, refs: dict, row: np.ndarray, ours: list[str]
) -> list[str] | None:
    """The program's op as tokens, if the reading's table supports it; else None."""
    if op.kind != ours[0].lower() or op.kind == "linear_sequence_map":
        return None
    if any(name not in refs for name in operands(op, program)):
        return None
    group = op_tokens(op, program, refs)
    if f"ENC_{op.encoding}" != ours[1]:
        return None
    if op.kind in ("aggregate", "selector_width"):
        # ours: KIND ENC REF_keys REF_queries CMP [REF_value].
        if group[2:4] != ours[2:4] or op.kind == "aggregate" and group[5] != ours[5]:
            return None
        if not group[4].startswith("CMP_"):  # a custom predicate: the reading must name the same
            return group if group[4] == ours[4] else None
        comparison = group[4][4:]
        fit = field(row, "comparison")[list(PREDICATES).index(comparison)]
        return group if fit == 1.0 else None
    fn = op.fn
    arity = len(op.inputs)
    fns = library_functions(arity)
    if fn not in fns:
        return None
    index = fns.index(fn)
    if arity == 1:
        return group if group[2] == ours[2] and field(row, "fn1")[index] == 1.0 else None
    return group if group[2:4] == ours[2:4] and field(row, "fn2")[index] == 1.0 else None


def _align(
    reading: Program, ours: list[Op], program: Program, theirs: list[Op], model: Model
) -> list[int] | None:
    """match[i]: the index in `theirs` of the op computing what ours[i] computes."""
    rng = np.random.default_rng(0)
    vocab, max_len = list(model.spec.vocab), model.spec.max_seq_len
    inputs = [
        tuple(vocab[k] for k in rng.integers(len(vocab), size=int(rng.integers(1, max_len + 1))))
        for _ in range(ALIGNMENT_INPUTS)
    ]
    our_traces = [trace(reading, xs) for xs in inputs]
    their_traces = [trace(program, xs) for xs in inputs]
    their_values = [[v for t in their_traces for v in t[op.name]] for op in theirs]
    match, used = [], set()
    for op in ours:
        values = [v for t in our_traces for v in t[op.name]]
        candidates = [
            j
            for j, other in enumerate(their_values)
            if j not in used and _same_values(values, other, op.encoding == "numerical")
        ]
        if not candidates:
            return None
        same_kind = [j for j in candidates if theirs[j].kind == op.kind]
        j = (same_kind or candidates)[0]
        used.add(j)
        match.append(j)
    return match


def _same_values(ours: list, theirs: list, numerical: bool) -> bool:
    """Equal values (numerical) or the same partition of the positions
    (categorical), where both are defined: an empty selection leaves the
    program's value undefined where the reading may hold a constant."""
    forward: dict = {}
    backward: dict = {}
    for a, b in zip(ours, theirs):
        if a is None or b is None:
            continue
        if numerical:
            # A string (a token) is never the number a numerical component holds.
            if not isinstance(a, int | float) or not isinstance(b, int | float) or abs(a - b) > 1e-4:
                return False
        elif forward.setdefault(a, b) != b or backward.setdefault(b, a) != a:
            return False
    return True
