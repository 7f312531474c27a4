"""Grammar-constrained beam search: weights to ranked program sketches.

In: a `MetaModel` and a `Model`. Out: up to k `Sketch`es, best first, each a
valid program (the grammar masks every step, so no invalid sequence can be
emitted) with the probability of every token it chose. Slots whose
probability is below `hole_threshold`, and the grammar's own holes (a
function the library does not name, unusual coefficients), are marked as
holes for the search layer.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from raspsynth.neural import BEAM, HOLE_THRESHOLD, TOP_K
from raspsynth.neural.meta_model import MetaModel, collate
from raspsynth.neural.program_tokens import HOLES, MAX_TOKENS, Grammar, token_ids, vocabulary
from raspsynth.neural.weight_encoding import encode_weights
from raspsynth.program.ir import Program
from raspsynth.tracr_bridge.model import Model


@dataclasses.dataclass(frozen=True)
class Sketch:
    program: Program
    tokens: tuple[str, ...]
    log_prob: float
    token_probs: tuple[float, ...]  # per token after BOS
    holes: dict[str, str]  # op name -> "function" | "coefficients" | "uncertain"
    op_confidence: dict[str, float]  # op name -> smallest probability among its tokens


@torch.no_grad()
def beam_search(
    meta_model: MetaModel,
    model: Model,
    beam: int = BEAM,
    top_k: int = TOP_K,
    hole_threshold: float = HOLE_THRESHOLD,
) -> list[Sketch]:
    meta_model.eval()
    device = next(meta_model.parameters()).device
    features, pairs, mask = collate([encode_weights(model)], device)
    memory = meta_model.encode(features, pairs, mask)
    ids, names = token_ids(), vocabulary()
    start = Grammar().push("BOS")
    live = [((ids["BOS"],), start, 0.0, ())]
    finished = []
    for _ in range(MAX_TOKENS - 1):
        if not live:
            break
        tokens = torch.tensor([seq for seq, *_ in live], device=device)
        logits = meta_model.decode(memory.expand(len(live), -1, -1), mask.expand(len(live), -1), tokens)[
            :, -1
        ]
        candidates = []
        for row, (seq, grammar, score, probs) in zip(logits, live):
            allowed = [ids[t] for t in grammar.allowed()]
            log_p = torch.log_softmax(row[allowed].float(), dim=0)
            for j in torch.topk(log_p, min(beam, len(allowed))).indices.tolist():
                token = names[allowed[j]]
                lp = float(log_p[j])
                candidates.append(
                    (score + lp, seq + (allowed[j],), grammar.push(token), probs + (math.exp(lp),))
                )
        candidates.sort(key=lambda c: -c[0])
        live = []
        for score, seq, grammar, probs in candidates[:beam]:
            if grammar.finished:
                finished.append((score, seq, grammar, probs))
            else:
                live.append((seq, grammar, score, probs))
        if len(finished) >= top_k:
            # Live beams below the k-th best finished score cannot enter the top k.
            kth = sorted((c[0] for c in finished), reverse=True)[top_k - 1]
            if all(score < kth for _, _, score, _ in live):
                break
    finished.sort(key=lambda c: -c[0])
    return [
        _sketch(score, seq, grammar, probs, hole_threshold) for score, seq, grammar, probs in finished[:top_k]
    ]


def _sketch(score, seq, grammar: Grammar, probs, hole_threshold: float) -> Sketch:
    names = vocabulary()
    tokens = tuple(names[i] for i in seq)
    decoded = grammar.program()
    holes = dict(decoded.holes)
    confidence: dict[str, float] = {}
    # Token groups follow value ops in order; map each group's probabilities to its op.
    value_ops = [op.name for op in decoded.program.ops if op.kind != "select"]
    index = -1
    for token, p in zip(tokens[1:], probs):
        if token.lower() in ("map", "sequence_map", "linear_sequence_map", "aggregate", "selector_width"):
            index += 1
        if token == "EOS" or index < 0:
            continue
        name = value_ops[index]
        confidence[name] = min(confidence.get(name, 1.0), p)
        if p < hole_threshold and token not in HOLES:
            holes.setdefault(name, "uncertain")
    return Sketch(decoded.program, tokens, score, tuple(probs), holes, confidence)
