"""Grammar-constrained beam search: weights to ranked program sketches.

In: a `MetaModel` and a `Model` (or its reading). Out: up to k `Sketch`es,
best first, each a valid program (the grammar masks every step, so no
invalid sequence can be emitted) with the probability of every token it
chose. The program has one op per component of the reading, written in the
reading's layer order: op i's kind comes from row i + 2's kind head, its
other tokens from the slot head for the kind chosen. Slots whose
probability is below `hole_threshold`, and the grammar's own holes (a
function the library does not name, unusual coefficients), are marked as
holes for the search layer. Weights the symbolic layer cannot read give no
sketches.

A table token (FN_TABLE, FN2_TABLE, PRED_TABLE, COEF_OTHER) says "what
this component's weights compute, which the library does not name". Where
the sketch's op is the reading's op for that row (same kind, operands and
encoding), `ground_tables` fills it with the reading's exact function,
predicate or coefficients: a lookup in the weights, no search. The op is
then no longer a hole (`Sketch.grounded` lists it). A table token on an op
the model wrote differently from the reading stays a hole.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from raspsynth.neural import BEAM, HOLE_THRESHOLD, TOP_K
from raspsynth.neural.block_encoding import encode_blocks
from raspsynth.neural.meta_model import MetaModel, collate
from raspsynth.neural.program_tokens import HOLES, OP_KINDS, Decoded, Grammar, operands, token_ids
from raspsynth.program.ir import SOURCES, Op, Program
from raspsynth.symbolic.decompile import Decompiled
from raspsynth.tracr_bridge.model import Model


@dataclasses.dataclass(frozen=True)
class Sketch:
    program: Program
    tokens: tuple[str, ...]
    log_prob: float
    token_probs: tuple[float, ...]  # per token after BOS
    holes: dict[str, str]  # op name -> "function" | "coefficients" | "predicate" | "uncertain"
    op_confidence: dict[str, float]  # op name -> smallest probability among its tokens
    grounded: tuple[str, ...] = ()  # ops whose table token was filled from the weights


@torch.no_grad()
def beam_search(
    meta_model: MetaModel,
    model: Model,
    beam: int = BEAM,
    top_k: int = TOP_K,
    hole_threshold: float = HOLE_THRESHOLD,
    decompiled: Decompiled | None = None,
) -> list[Sketch]:
    """The top-k sketches; pass `decompiled` when the model's reading exists already."""
    encoded = encode_blocks(model, decompiled)
    if encoded is None:
        return []
    meta_model.eval()
    device = next(meta_model.parameters()).device
    kind_logits, slot_logits = meta_model(*collate([encoded], device))
    kind_logits, slot_logits = kind_logits[0].float().cpu().numpy(), slot_logits[0].float().cpu().numpy()
    ids = token_ids()
    live = [(0.0, Grammar(ops=encoded.ops).push("BOS"), ())]
    finished = []
    while live:
        candidates = []
        for score, grammar, probs in live:
            allowed = sorted(grammar.allowed(), key=ids.__getitem__)
            log_p = _log_probs(grammar, allowed, kind_logits, slot_logits)
            for j in np.argsort(-log_p, kind="stable")[:beam]:
                candidates.append((score + log_p[j], grammar.push(allowed[j]), probs + (math.exp(log_p[j]),)))
        candidates.sort(key=lambda c: -c[0])
        live = []
        for candidate in candidates[:beam]:
            (finished if candidate[1].finished else live).append(candidate)
        if len(finished) >= top_k:
            # Live beams below the k-th best finished score cannot enter the top k.
            kth = sorted((c[0] for c in finished), reverse=True)[top_k - 1]
            live = [c for c in live if c[0] >= kth]
    finished.sort(key=lambda c: -c[0])
    reading = encoded.decompiled.program
    return [
        _sketch(score, grammar, probs, hole_threshold, reading) for score, grammar, probs in finished[:top_k]
    ]


def _log_probs(grammar: Grammar, allowed: list[str], kind_logits, slot_logits) -> np.ndarray:
    """Log-probabilities of the allowed next tokens, renormalised over them."""
    row = len(grammar.encodings)  # the op being written (or started) is row len(encodings)
    group = grammar.current_group()
    if group is None:  # an op starts (or EOS, when every row has its op)
        if allowed == ["EOS"]:
            return np.zeros(1)
        logits = np.array([kind_logits[row, OP_KINDS.index(t.lower())] for t in allowed])
    else:
        kind, slot = OP_KINDS.index(group[0].lower()), len(group) - 1
        logits = slot_logits[row, kind, slot, [token_ids()[t] for t in allowed]]
    logits = logits - logits.max()
    return logits - np.log(np.exp(logits).sum())


def ground_tables(decoded: Decoded, reading: Program) -> tuple[Program, dict[str, str], tuple[str, ...]]:
    """`decoded`'s program with each table hole filled from `reading` (the
    weights' reading, its value ops in row order) where the op is the
    reading's op of the same row; (program, holes left, ops grounded)."""
    ours = [op for op in decoded.program.ops if op.kind != "select"]
    theirs = [op for op in reading.ops if op.kind != "select"]
    if len(ours) != len(theirs):
        return decoded.program, dict(decoded.holes), ()
    our_refs, their_refs = _reference_numbers(ours), _reference_numbers(theirs)
    renamed = {}  # our select or value op name -> its grounded replacement
    grounded = []
    for op, their in zip(ours, theirs):
        hole = decoded.holes.get(op.name)
        if hole is None or (op.kind, op.encoding) != (their.kind, their.encoding):
            continue
        our_operands = [our_refs[name] for name in operands(op, decoded.program)]
        if our_operands != [their_refs[name] for name in operands(their, reading)]:
            continue
        if hole == "predicate":
            select, their_select = decoded.program.op(op.inputs[0]), reading.op(their.inputs[0])
            renamed[select.name] = dataclasses.replace(
                select, fn=their_select.fn, comparison=their_select.comparison
            )
        elif hole == "function":
            renamed[op.name] = dataclasses.replace(op, fn=their.fn)
        else:
            renamed[op.name] = dataclasses.replace(op, coefficients=their.coefficients)
        grounded.append(op.name)
    ops = tuple(renamed.get(op.name, op) for op in decoded.program.ops)
    holes = {name: hole for name, hole in decoded.holes.items() if name not in grounded}
    return Program(ops, decoded.program.output), holes, tuple(grounded)


def _reference_numbers(value_ops: list[Op]) -> dict[str, int]:
    """REF numbers: the sources first, then the value ops in order."""
    return {name: i for i, name in enumerate(SOURCES + tuple(op.name for op in value_ops))}


def _sketch(score, grammar: Grammar, probs, hole_threshold: float, reading: Program) -> Sketch:
    tokens = grammar.prefix
    decoded = grammar.program()
    program, holes, grounded = ground_tables(decoded, reading)
    confidence: dict[str, float] = {}
    # Token groups follow value ops in order; map each group's probabilities to its op.
    value_ops = [op.name for op in program.ops if op.kind != "select"]
    index = -1
    for token, p in zip(tokens[1:], probs):
        if token.lower() in OP_KINDS:
            index += 1
        if token == "EOS" or index < 0:
            continue
        name = value_ops[index]
        confidence[name] = min(confidence.get(name, 1.0), p)
        if p < hole_threshold and token not in HOLES:
            holes.setdefault(name, "uncertain")
    return Sketch(program, tokens, score, tuple(probs), holes, confidence, grounded)
