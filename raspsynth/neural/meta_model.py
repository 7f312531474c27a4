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
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from raspsynth.neural.block_encoding import FEATURES, EncodedBlocks
from raspsynth.neural.program_tokens import OP_KINDS, SLOTS, vocabulary

MAX_SLOTS = max(len(slots) for slots in SLOTS.values())


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

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(kind logits [B, R, K], slot logits [B, R, K, MAX_SLOTS, V])."""
        x = self.encoder(self.embed_rows(features), src_key_padding_mask=~mask)
        x = self.norm(x)
        slots = self.slot_head(x[:, :, None, None, :] + self.slot_queries)
        return self.kind_head(x), slots


def collate(encoded: list[EncodedBlocks] | list[np.ndarray], device: torch.device | str = "cpu"):
    """Pad readings (or their feature arrays) to one batch: (features, mask)."""
    arrays = [e.features if isinstance(e, EncodedBlocks) else e for e in encoded]
    rows = max(a.shape[0] for a in arrays)
    features = np.zeros((len(arrays), rows, FEATURES), dtype=np.float32)
    mask = np.zeros((len(arrays), rows), dtype=bool)
    for i, a in enumerate(arrays):
        features[i, : a.shape[0]], mask[i, : a.shape[0]] = a, True
    return torch.from_numpy(features).to(device), torch.from_numpy(mask).to(device)
