"""The meta-model: rows of a model's reading in, per-op token distributions out.

In: batches of `EncodedBlocks` features, padded to the batch's longest
reading ([B, R, FEATURES] and a mask [B, R], True for real rows). Out, for
every row r >= 2 (op r - 2 of the program): log-odds of its op kind [B, R, K]
and, for each kind, of each token after the kind token [B, R, K, SLOTS, V]
(encoding, operands, function or comparison, coefficients: see
`program_tokens`). Rows 0 and 1 (tokens, indices) are context only.

A transformer encoder over the rows, with no positional encoding: a row's
features carry its own reference number and its operands', so attention
can relate rows without an order imposed on them. Each row's output then
answers "which op is this": a kind head, and a slot head queried with a
learned embedding per (kind, slot), so that every token of the op is read
off the row's representation given the kind being written. The program's
token sequence is then decoded row by row (`decode`), with the grammar
masking every step.

Evidence logits: most tokens have a feature that says, for this row, what
the reading saw: the kind and encoding it read, each operand slot's
reference, which library functions and comparisons fit the table exactly
(and a table token where none does), a linear map's coefficients. Each such
feature is added straight to its token's logit, scaled by a gate the row's
representation sets per (kind, slot). The encoder then learns where to
trust the reading and where the training distribution's priors should win
(ties between fitting functions, unread operands), while copying what the
reading says stays one scalar per slot: it cannot depend on the operand's
reference number or on the program's shape. Without this path, a model
trained on one sampler copied operands and coefficients by position and
value and got them wrong on another sampler's programs (REF_5 read as
REF_6, a coefficient 3 it had never seen read as 2).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from raspsynth.neural.block_encoding import (
    FEATURES,
    MAX_REFS,
    OPERAND_SLOTS,
    ROW_KINDS,
    EncodedBlocks,
    columns,
)
from raspsynth.neural.program_tokens import (
    COEFFICIENT_TOKENS,
    OP_KINDS,
    SLOTS,
    fn_token,
    predicate_token_of,
    token_ids,
    vocabulary,
)
from raspsynth.program.ir import PREDICATES, library_predicates
from raspsynth.symbolic.value_semantics import library_functions

MAX_SLOTS = max(len(slots) for slots in SLOTS.values())
# Which operand feature each reference slot copies, per kind: tokens write a
# Select's keys before its queries.
_REF_FEATURES = {
    "map": ("first",),
    "sequence_map": ("first", "second"),
    "linear_sequence_map": ("first", "second"),
    "aggregate": ("key", "query", "value"),
    "selector_width": ("key", "query"),
}
# Extra columns after the features: "no exact fit" per table token, then zero.
_NO_FIT = {
    "FN_TABLE": ("fn1_exact",),
    "FN2_TABLE": ("fn2_exact",),
    "PRED_TABLE": ("comparison_exact", "predicate_exact"),
}
_ZERO = FEATURES + len(_NO_FIT)


def _evidence_sources() -> tuple[np.ndarray, np.ndarray]:
    """(kind source [K], slot source [K, MAX_SLOTS, V]): for each kind and
    token, the column of the extended features that is its evidence (_ZERO
    where the reading says nothing about it)."""
    ids, vocab = token_ids(), vocabulary()
    kind_source = np.array([columns("kind")[ROW_KINDS.index(k)] for k in OP_KINDS])
    source = np.full((len(OP_KINDS), MAX_SLOTS, len(vocab)), _ZERO, dtype=np.int64)
    no_fit = {token: FEATURES + i for i, token in enumerate(_NO_FIT)}
    fn_tokens = {
        "fn": (library_functions(1), "fn1_exact", "FN_TABLE"),
        "fn2": (library_functions(2), "fn2_exact", "FN2_TABLE"),
    }
    for k, kind in enumerate(OP_KINDS):
        refs = iter(_REF_FEATURES[kind])
        coefficient = 0
        for s, slot in enumerate(SLOTS[kind]):
            row = source[k, s]
            if slot == "enc":
                row[ids["ENC_categorical"]], row[ids["ENC_numerical"]] = columns("encoding")
            elif slot in ("ref", "value"):
                operand = OPERAND_SLOTS.index(next(refs))
                first = columns("operands")[operand * (MAX_REFS + 1)]
                for j in range(MAX_REFS):
                    row[ids[f"REF_{j}"]] = first + j
            elif slot in fn_tokens:
                fns, name, table = fn_tokens[slot]
                for fn, column in zip(fns, columns(name)):
                    row[ids[fn_token(fn)]] = column
                row[ids[table]] = no_fit[table]
            elif slot == "cmp":
                for c, column in zip(PREDICATES, columns("comparison_exact")):
                    row[ids[f"CMP_{c}"]] = column
                for fn, column in zip(library_predicates(), columns("predicate_exact")):
                    row[ids[predicate_token_of(fn)]] = column
                row[ids["PRED_TABLE"]] = no_fit["PRED_TABLE"]
            elif slot == "coef":
                first = columns("coefficients")[coefficient * len(COEFFICIENT_TOKENS)]
                for j, token in enumerate(COEFFICIENT_TOKENS):
                    row[ids[token]] = first + j
                coefficient += 1
    return kind_source, source


@dataclasses.dataclass(frozen=True)
class MetaModelConfig:
    width: int = 128
    heads: int = 4
    layers: int = 3
    dropout: float = 0.1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class MetaModel(nn.Module):
    def __init__(self, config: MetaModelConfig = MetaModelConfig()) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.embed_rows = nn.Sequential(nn.Linear(FEATURES, width), nn.GELU(), nn.Linear(width, width))
        layer = nn.TransformerEncoderLayer(
            width, config.heads, 4 * width, config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.kind_head = nn.Linear(width, len(OP_KINDS))
        self.slot_queries = nn.Parameter(torch.randn(len(OP_KINDS), MAX_SLOTS, width) * 0.02)
        self.slot_head = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, len(vocabulary()))
        )
        # Gates on the evidence logits: one for the kind, one per (kind, slot), set per row.
        self.evidence_gate = nn.Linear(width, 1 + len(OP_KINDS) * MAX_SLOTS)
        nn.init.zeros_(self.evidence_gate.weight)
        nn.init.constant_(self.evidence_gate.bias, 2.0)
        kind_source, slot_source = _evidence_sources()
        self.register_buffer("kind_source", torch.from_numpy(kind_source), persistent=False)
        self.register_buffer("slot_source", torch.from_numpy(slot_source), persistent=False)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(kind logits [B, R, K], slot logits [B, R, K, MAX_SLOTS, V])."""
        x = self.encoder(self.embed_rows(features), src_key_padding_mask=~mask)
        x = self.norm(x)
        slots = self.slot_head(x[:, :, None, None, :] + self.slot_queries)
        b, r, k, s, v = slots.shape
        gates = self.evidence_gate(x)
        no_fit = [
            1 - torch.cat([features[..., columns(name)] for name in names], -1).amax(-1, keepdim=True)
            for names in _NO_FIT.values()
        ]
        extended = torch.cat([features, *no_fit, torch.zeros_like(features[..., :1])], dim=-1)
        kind_evidence = extended[..., self.kind_source]  # [B, R, K]
        slot_evidence = extended[..., self.slot_source.reshape(-1)].reshape(b, r, k, s, v)
        kinds = self.kind_head(x) + gates[..., :1] * kind_evidence
        slots = slots + gates[..., 1:].reshape(b, r, k, s, 1) * slot_evidence
        return kinds, slots


def collate(encoded: list[EncodedBlocks] | list[np.ndarray], device: torch.device | str = "cpu"):
    """Pad readings (or their feature arrays) to one batch: (features, mask)."""
    arrays = [e.features if isinstance(e, EncodedBlocks) else e for e in encoded]
    rows = max(a.shape[0] for a in arrays)
    features = np.zeros((len(arrays), rows, FEATURES), dtype=np.float32)
    mask = np.zeros((len(arrays), rows), dtype=bool)
    for i, a in enumerate(arrays):
        features[i, : a.shape[0]], mask[i, : a.shape[0]] = a, True
    return torch.from_numpy(features).to(device), torch.from_numpy(mask).to(device)
