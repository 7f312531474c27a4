"""The `Model`: a tracr-style transformer's weights plus its input/output spec.

In: weight arrays laid out as tracr's Haiku parameters (see DESIGN.md,
raspsynth-model/1) and the I/O spec. Out: decoded outputs of a batched forward
pass that reproduces tracr's `AssembledTransformerModel.apply`.

A `Model` never carries residual labels: everything downstream sees weights
and the spec only. Arrays are float32, as tracr's are, and read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from raspsynth.errors import CompressionFailed, InputError, checked_seed
from raspsynth.tracr_bridge.outputs import PAST_END, decode_codes, output_codes, value_key

FORMAT_VERSION = "raspsynth-model/1"

Token = Hashable
Output = Any  # a categorical value, or a float for numerical outputs


# Inputs per length on which `Model.logit_scale` is measured.
SCALE_SAMPLES_PER_LENGTH = 4
# Visited-state directions kept by a lossless compression: eigenvalues of the
# states' Gram matrix above this share of the largest (float64 rounding of
# float32 states stays far below it).
COMPRESSION_RANK_TOLERANCE = 1e-9


# The residual bases `Model.in_residual` puts a model in.
RESIDUAL_KINDS = ("plain", "permuted", "rotated", "mixed", "lossless", "learned")


def _token_ids(flat: list, index: dict) -> np.ndarray:
    """index[t] for every token t of `flat` (-1 for unknown ones). Tokens of
    one numpy type (all numbers, or all strings) are looked up once per
    distinct value; anything else token by token. TypeError: unhashable."""
    try:
        array = np.asarray(flat)
    except (ValueError, TypeError):
        array = None
    # numpy turns [1, "a"] into strings: a string array only when every token is one.
    strings = array is not None and array.dtype.kind == "U" and all(type(t) is str for t in flat)
    if array is not None and array.ndim == 1 and (array.dtype.kind in "biu" or strings):
        distinct, inverse = np.unique(array, return_inverse=True)
        lookup = np.array([index.get(v, -1) for v in distinct.tolist()], dtype=np.int64)
        return lookup[inverse] if len(flat) else np.zeros(0, np.int64)
    return np.fromiter((index.get(t, -1) for t in flat), dtype=np.int64, count=len(flat))


def token_rows(target: IOSpec, candidate: IOSpec) -> np.ndarray | None:
    """The candidate's token id for each of the target's input tokens (BOS to
    BOS and PAD to PAD, whatever each is called), or None when the input
    vocabularies differ."""
    index = {value_key(tok): i for i, tok in enumerate(candidate.input_vocab)}
    index[("bos",)] = candidate.input_vocab.index(candidate.bos)
    index[("pad",)] = candidate.input_vocab.index(candidate.pad)
    rows = []
    for tok in target.input_vocab:
        key = ("bos",) if tok == target.bos else ("pad",) if tok == target.pad else value_key(tok)
        if key not in index:
            return None
        rows.append(index[key])
    return np.array(rows)


def spanning_vectors(gram: np.ndarray) -> tuple[np.ndarray, int]:
    """The eigenvectors [D, D] of a Gram matrix, largest eigenvalue first,
    and its rank: the eigenvalues above `COMPRESSION_RANK_TOLERANCE` times
    the largest."""
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    rank = int(np.sum(values > values[0] * COMPRESSION_RANK_TOLERANCE)) if values[0] > 0 else 0
    return vectors, rank


def _length_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Indices of the inputs with `lengths`, in batches of at most
    `batch_size` that share one length (so none is padded or masked)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer; got {batch_size!r}")
    order = np.argsort(lengths, kind="stable")
    ends = np.flatnonzero(np.diff(lengths[order])) + 1  # where the length changes
    for run in np.split(order, ends) if len(order) else []:
        for start in range(0, len(run), batch_size):
            yield run[start : start + batch_size]


def _in_order(pairs: list[tuple[int, Any]]) -> list:
    """The values of (position, value) pairs, by position."""
    out: list = [None] * len(pairs)
    for i, value in pairs:
        out[i] = value
    return out


@contextlib.contextmanager
def one_blas_thread():
    """BLAS limited to one thread: the forward pass multiplies small matrices
    (d_model in the tens), where extra threads only add synchronisation, and
    on a busy machine oversubscribed BLAS threads cost 4x (measured). So does
    all of synthesis: two at once on two cores took 27 s each on a rotated
    dev-set model that takes 13 s alone, and 13 s each with one BLAS thread
    (`experiments/compare.py` runs two workers)."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@functools.cache
def _blas_controller():
    # Built once: finding the loaded BLAS libraries reads /proc on every call.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _frozen(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.float32, copy=True)
    out.setflags(write=False)
    return out


@dataclasses.dataclass(frozen=True)
class IOSpec:
    """What goes in and comes out of a model.

    `input_vocab` lists tokens in token-embedding row order and includes `bos`
    and `pad`. `output_values` lists categorical outputs in unembed column
    order; it is None for a numerical output (one unembed column).
    """

    input_vocab: tuple[Token, ...]
    bos: str
    pad: str
    max_seq_len: int
    output_values: tuple[Output, ...] | None
    causal: bool = False

    @property
    def numerical(self) -> bool:
        return self.output_values is None

    @property
    def vocab(self) -> tuple[Token, ...]:
        """The user-facing input tokens: `input_vocab` without BOS and PAD."""
        return tuple(t for t in self.input_vocab if t not in (self.bos, self.pad))


@dataclasses.dataclass(frozen=True, eq=False)
class HeadWeights:
    """One attention head: residual -> query/key/value [D, K], output [K, D]."""

    query_w: np.ndarray
    query_b: np.ndarray
    key_w: np.ndarray
    key_b: np.ndarray
    value_w: np.ndarray
    value_b: np.ndarray
    output_w: np.ndarray

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _frozen(getattr(self, f.name)))


@dataclasses.dataclass(frozen=True, eq=False)
class LayerWeights:
    """One transformer layer: attention heads, then an MLP (ReLU)."""

    heads: tuple[HeadWeights, ...]
    attn_output_b: np.ndarray  # [D], shared by all heads (Haiku's attn/linear/b)
    mlp_in_w: np.ndarray  # [D, M]
    mlp_in_b: np.ndarray  # [M]
    mlp_out_w: np.ndarray  # [M, D]
    mlp_out_b: np.ndarray  # [D]

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(self.heads))
        for f in dataclasses.fields(self):
            if f.name != "heads":
                object.__setattr__(self, f.name, _frozen(getattr(self, f.name)))

    @functools.cached_property
    def compact(self) -> CompactLayer:
        """This layer for the forward pass (`CompactLayer`), built once."""
        return CompactLayer.of(self)


def _used(weights: np.ndarray, axis: int) -> np.ndarray:
    """Indices along `axis` where `weights` has a nonzero entry."""
    return np.flatnonzero(np.abs(weights).max(axis=1 - axis, initial=0.0) > 0)


@dataclasses.dataclass(frozen=True, eq=False)
class CompactLayer:
    """A layer as the forward pass computes it. tracr's weights are sparse (a
    sublayer reads a few of the residual's dimensions and writes a few), so
    each product runs over only the rows it reads and the columns it writes,
    and all heads of the layer share one query/key/value product. Dropping
    exact zeros changes no value (beyond the order of float additions).

    - attention: the residual's columns `attn_reads` times `qkv_w` (every
      head's query, key and value weights side by side, each head `sizes[h]`
      wide) plus `qkv_b`; the heads' mixed values times `out_w` are added to
      columns `attn_writes`, then the shared output bias `attn_b`;
    - MLP: columns `mlp_reads` times `in_w` plus `in_b`, ReLU, times `out_w`
      plus `out_b`, added to columns `mlp_writes`, over the hidden units that
      can be nonzero and are read out.
    """

    attn_reads: np.ndarray
    qkv_w: np.ndarray
    qkv_b: np.ndarray
    sizes: tuple[int, ...]
    attn_writes: np.ndarray
    attn_out_w: np.ndarray
    attn_b: np.ndarray | None
    mlp_reads: np.ndarray
    mlp_in_w: np.ndarray
    mlp_in_b: np.ndarray
    mlp_writes: np.ndarray
    mlp_out_w: np.ndarray
    mlp_out_b: np.ndarray | None

    @staticmethod
    def of(layer: LayerWeights) -> CompactLayer:
        # A head writes something only with value and output weights (key_size 0 has neither).
        heads = [h for h in layer.heads if (h.value_w.any() or h.value_b.any()) and h.output_w.any()]
        d_model = layer.mlp_in_w.shape[0]
        if heads:
            qkv_w = np.concatenate(
                [h.query_w for h in heads] + [h.key_w for h in heads] + [h.value_w for h in heads], 1
            )
            qkv_b = np.concatenate(
                [h.query_b for h in heads] + [h.key_b for h in heads] + [h.value_b for h in heads]
            )
            out_w = np.concatenate([h.output_w for h in heads], 0)
        else:
            qkv_w, qkv_b = np.zeros((d_model, 0), np.float32), np.zeros(0, np.float32)
            out_w = np.zeros((0, d_model), np.float32)
        attn_reads, attn_writes = _used(qkv_w, 0), _used(out_w, 1)
        # Hidden units that can be nonzero (weights in, or a positive bias) and are read out.
        units = np.union1d(_used(layer.mlp_in_w, 1), np.flatnonzero(layer.mlp_in_b > 0))
        units = np.intersect1d(units, _used(layer.mlp_out_w, 0))
        mlp_reads = _used(layer.mlp_in_w[:, units], 0)
        mlp_writes = _used(layer.mlp_out_w[units], 1)
        return CompactLayer(
            attn_reads,
            np.ascontiguousarray(qkv_w[attn_reads]),
            qkv_b,
            tuple(h.query_w.shape[1] for h in heads),
            attn_writes,
            np.ascontiguousarray(out_w[:, attn_writes]),
            layer.attn_output_b if layer.attn_output_b.any() else None,
            mlp_reads,
            np.ascontiguousarray(layer.mlp_in_w[np.ix_(mlp_reads, units)]),
            layer.mlp_in_b[units],
            mlp_writes,
            np.ascontiguousarray(layer.mlp_out_w[np.ix_(units, mlp_writes)]),
            layer.mlp_out_b if layer.mlp_out_b.any() else None,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """Weights and I/O spec of a compiled transformer; no residual labels."""

    token_embed: np.ndarray  # [V, D], rows in spec.input_vocab order
    pos_embed: np.ndarray  # [max_seq_len + 1, D], row 0 is BOS's position
    layers: tuple[LayerWeights, ...]
    unembed: np.ndarray  # [D, O]
    spec: IOSpec

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        for name in ("token_embed", "pos_embed", "unembed"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    # -- shape facts, derived from the arrays (one source of truth) ---------
    @property
    def d_model(self) -> int:
        return self.token_embed.shape[1]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_heads(self) -> int:
        return len(self.layers[0].heads) if self.layers else 0

    @property
    def key_size(self) -> int:
        return self.layers[0].heads[0].query_w.shape[1] if self.layers else 0

    @property
    def mlp_hidden_size(self) -> int:
        return self.layers[0].mlp_in_w.shape[1] if self.layers else 0

    def meta(self) -> dict[str, Any]:
        """The JSON `meta` entry of the raspsynth-model/1 file."""
        spec = self.spec
        output = (
            {"kind": "numerical"}
            if spec.numerical
            else {"kind": "categorical", "values": list(spec.output_values)}
        )
        return {
            "format": FORMAT_VERSION,
            "input_vocab": list(spec.input_vocab),
            "bos": spec.bos,
            "pad": spec.pad,
            "max_seq_len": spec.max_seq_len,
            "output": output,
            "num_heads": self.num_heads,
            "num_layers": self.num_layers,
            "key_size": self.key_size,
            "mlp_hidden_size": self.mlp_hidden_size,
            "causal": spec.causal,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights under their raspsynth-model/1 names (Haiku's layout)."""
        out = {
            "token_embed/embeddings": self.token_embed,
            "pos_embed/embeddings": self.pos_embed,
            "unembed": self.unembed,
        }
        for i, layer in enumerate(self.layers):
            attn = f"transformer/layer_{i}/attn"
            for proj in ("query", "key", "value"):
                out[f"{attn}/{proj}/w"] = np.concatenate(
                    [getattr(h, f"{proj}_w") for h in layer.heads], axis=1
                )
                out[f"{attn}/{proj}/b"] = np.concatenate([getattr(h, f"{proj}_b") for h in layer.heads])
            out[f"{attn}/linear/w"] = np.concatenate([h.output_w for h in layer.heads], axis=0)
            out[f"{attn}/linear/b"] = layer.attn_output_b
            mlp = f"transformer/layer_{i}/mlp"
            out[f"{mlp}/linear_1/w"] = layer.mlp_in_w
            out[f"{mlp}/linear_1/b"] = layer.mlp_in_b
            out[f"{mlp}/linear_2/w"] = layer.mlp_out_w
            out[f"{mlp}/linear_2/b"] = layer.mlp_out_b
        return out

    def save(self, path: str) -> None:
        """Write the model as a raspsynth-model/1 `.npz` file at `path`."""
        with open(path, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(self.meta())), **self.arrays())

    def to_transformer_lens(self) -> Any:
        """This model as a TransformerLens 4.x `TransformerBridge` (tracr's
        forward pass, this model's unembed); needs `raspsynth[tl]`. See
        `raspsynth.tracr_bridge.transformer_lens`."""
        from raspsynth.tracr_bridge.transformer_lens import to_transformer_lens

        return to_transformer_lens(self)

    @functools.cached_property
    def logit_scale(self) -> float:
        """The largest |output logit| the model produces, measured on every
        length-1 input and `SCALE_SAMPLES_PER_LENGTH` seeded random inputs of
        each longer length (1.0 for tracr's one-hot outputs). The float-noise
        floor that marks undefined positions is relative to it
        (`raspsynth.tracr_bridge.outputs`)."""
        vocab = self.spec.vocab
        if not vocab or self.spec.max_seq_len < 1:
            return 1.0
        rng = np.random.default_rng(0)
        seqs = [[t] for t in vocab] + [
            [vocab[i] for i in rng.integers(len(vocab), size=length)]
            for length in range(2, self.spec.max_seq_len + 1)
            for _ in range(SCALE_SAMPLES_PER_LENGTH)
        ]
        largest = max(float(np.abs(logits).max(initial=0.0)) for logits in self.logits(seqs))
        return largest if largest > 0 else 1.0

    # -- forward pass -------------------------------------------------------
    def encode(self, seqs: Sequence[Sequence[Token]]) -> list[np.ndarray]:
        """Token ids with BOS prepended, one array per sequence.

        Raises InputError for anything but a list of token sequences, for
        unknown tokens and for sequences over max_seq_len.
        """
        ids, lengths = self.encode_padded(seqs)
        return [row[:n] for row, n in zip(ids, lengths)]

    def encode_padded(self, seqs: Sequence[Sequence[Token]]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids as one array [N, longest + 1] (BOS first, PAD after a
        sequence's end) and each sequence's length with BOS. One pass over
        the tokens, no per-sequence arrays; errors as for `encode`."""
        spec = self.spec
        index = {tok: i for i, tok in enumerate(spec.input_vocab)}
        for special in (spec.bos, spec.pad):
            index.pop(special, None)  # not input tokens
        if isinstance(seqs, str | bytes) or not isinstance(seqs, Iterable):
            raise InputError(f"expected a list of token sequences; got {type(seqs).__name__}")
        strings_ok = all(isinstance(t, str) for t in spec.vocab)
        flat: list = []
        lengths: list[int] = []
        for n, seq in enumerate(seqs):
            if not strings_ok and isinstance(seq, str | bytes):
                raise InputError(f"sequence {n} is a string; give a list of tokens")
            before = len(flat)
            try:
                flat.extend(seq)
            except TypeError:
                raise InputError(f"sequence {n} is {type(seq).__name__}, not a sequence of tokens") from None
            if len(flat) - before > spec.max_seq_len:
                raise InputError(
                    f"sequence {n} has length {len(flat) - before}; this model takes at most "
                    f"{spec.max_seq_len} tokens"
                )
            lengths.append(len(flat) - before)
        try:
            ids = _token_ids(flat, index)
        except TypeError:
            raise InputError(
                f"a sequence holds unhashable values; tokens are scalars from the model's "
                f"vocabulary {list(spec.vocab)}"
            ) from None
        if (ids < 0).any():
            first = int(np.flatnonzero(ids < 0)[0])
            n = int(np.searchsorted(np.cumsum(lengths), first, side="right"))
            unknown = sorted({repr(t) for t, i in zip(flat, ids.tolist()) if i < 0})
            raise InputError(
                f"sequence {n} has token(s) {unknown} not in the model's vocabulary {list(spec.vocab)}"
            )
        lengths_array = np.array(lengths, dtype=np.int64) + 1
        width = int(lengths_array.max(initial=1))
        padded = np.full((len(lengths), width), spec.input_vocab.index(spec.pad), dtype=np.int64)
        padded[:, 0] = spec.input_vocab.index(spec.bos)
        # Row r's tokens go to columns 1 .. lengths[r] - 1.
        rows = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if lengths else np.zeros(0, np.int64)
        columns = np.arange(len(flat)) - np.repeat(starts, lengths) + 1
        padded[rows, columns] = ids
        return padded, lengths_array

    def residual_stream(self, ids: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Final residual stream [B, T, D] for token ids [B, T] (BOS included).

        `lengths` (BOS included) marks padding: keys past a sequence's length
        are masked as tracr masks them (logit -1e30, so exactly zero weight),
        which leaves the real positions as if the sequence ran alone.
        Arithmetic is float32 as in tracr; softmax subnormals are flushed to
        zero as XLA on CPU does, so argmax ties between near-zero logits break
        the same way. Position-wise products run on the [B·T, D] matrix, all
        heads of a layer at once, under one BLAS thread (`one_blas_thread`).
        """
        with one_blas_thread():
            return self._residual_stream(ids, lengths)

    def _residual_stream(self, ids: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
        *_, final = self._states(ids, lengths)
        return final.reshape(ids.shape[0], ids.shape[1], -1)

    def _states(self, ids: np.ndarray, lengths: np.ndarray | None) -> Iterator[np.ndarray]:
        """The residual [B·T, D] after the embeddings and after every
        sublayer, updated in place between yields (use it before the next)."""
        batch, seq_len = ids.shape
        x = (self.token_embed[ids] + self.pos_embed[np.arange(seq_len)][None]).reshape(batch * seq_len, -1)
        mask = np.ones((batch, 1, seq_len), dtype=bool)
        if lengths is not None:
            mask = (np.arange(seq_len)[None, :] < lengths[:, None])[:, None, :]
        if self.spec.causal:
            mask = mask & np.tril(np.ones((seq_len, seq_len), dtype=bool))[None]
        masked = not mask.all()
        tiny = np.finfo(np.float32).tiny
        yield x
        for layer in (full.compact for full in self.layers):
            if layer.sizes:
                qkv = (x[:, layer.attn_reads] @ layer.qkv_w + layer.qkv_b).reshape(batch, seq_len, -1)
                total, mixed, start = sum(layer.sizes), [], 0
                for size in layer.sizes:
                    q = qkv[..., start : start + size]
                    k = qkv[..., total + start : total + start + size]
                    v = qkv[..., 2 * total + start : 2 * total + start + size]
                    start += size
                    weights = q @ k.transpose(0, 2, 1)
                    weights /= np.float32(np.sqrt(size))
                    if masked:
                        np.copyto(weights, np.float32(-1e30), where=~mask)
                    weights -= weights.max(axis=-1, keepdims=True)  # softmax, in place
                    np.exp(weights, out=weights)
                    weights /= weights.sum(axis=-1, keepdims=True)
                    weights[weights < tiny] = 0.0
                    mixed.append(weights @ v)
                mixed = np.concatenate(mixed, -1).reshape(batch * seq_len, -1)
                x[:, layer.attn_writes] += mixed @ layer.attn_out_w
            if layer.attn_b is not None:
                x += layer.attn_b
            yield x
            if len(layer.mlp_writes):
                hidden = np.maximum(x[:, layer.mlp_reads] @ layer.mlp_in_w + layer.mlp_in_b, 0.0)
                x[:, layer.mlp_writes] += hidden @ layer.mlp_out_w
            if layer.mlp_out_b is not None:
                x += layer.mlp_out_b
            yield x

    def _batches(self, encoded: tuple[np.ndarray, np.ndarray], batch_size: int) -> Iterator[tuple]:
        """(positions in the input, final residual [b, T, D] with BOS first,
        lengths with BOS) per batch of `encoded` (`encode_padded`'s ids and
        lengths); a batch holds sequences of one length (`_length_batches`)."""
        ids_all, lengths_all = encoded
        for picked in _length_batches(lengths_all, batch_size):
            lengths = lengths_all[picked]
            yield picked, self.residual_stream(ids_all[picked, : lengths[0]], lengths), lengths

    def _logit_batches(self, encoded: tuple[np.ndarray, np.ndarray], batch_size: int) -> Iterator[tuple]:
        """As `_batches`, with output logits [b, T, O] for the residual (BOS
        dropped) and lengths without BOS."""
        for picked, residual, lengths in self._batches(encoded, batch_size):
            batch, width, d_model = residual[:, 1:].shape
            logits = residual[:, 1:].reshape(batch * width, d_model) @ self.unembed
            yield picked, logits.reshape(batch, width, self.unembed.shape[1]), lengths - 1

    def visited_states(
        self, seqs: Sequence[Sequence[Token]], batch_size: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The residual before every sublayer and after the last, per batch of
        inputs of one length: (token ids [b, T], states [2 * num_layers + 1,
        b, T, D]), BOS position first. States 2l are layer l's attention
        input, 2l + 1 its MLP input."""
        ids_all, lengths_all = self.encode_padded(seqs)
        with one_blas_thread():
            for picked in _length_batches(lengths_all, batch_size):
                lengths = lengths_all[picked]
                ids = ids_all[picked, : lengths[0]]
                states = np.empty((2 * self.num_layers + 1, ids.size, self.d_model), dtype=np.float32)
                for stage, x in enumerate(self._states(ids, lengths)):
                    states[stage] = x  # _states updates x in place
                yield ids, states.reshape(len(states), *ids.shape, self.d_model)

    def residuals(self, seqs: Sequence[Sequence[Token]], batch_size: int = 4096) -> list[np.ndarray]:
        """The final residual stream [len + 1, D] of each input sequence (BOS
        position first), in the order given."""
        out: list = []
        for picked, residual, _ in self._batches(self.encode_padded(seqs), batch_size):
            out.extend(zip(picked.tolist(), residual))
        return _in_order(out)

    def logits(self, seqs: Sequence[Sequence[Token]], batch_size: int = 4096) -> list[np.ndarray]:
        """Output logits [len, O] for each input sequence, BOS position
        dropped, in the order given (computed in batches of one length)."""
        out: list = []
        for picked, logits, lengths in self._logit_batches(self.encode_padded(seqs), batch_size):
            out.extend(zip(picked.tolist(), (row[:n] for row, n in zip(logits, lengths))))
        return _in_order(out)

    def output_codes(
        self, seqs: Sequence[Sequence[Token]], batch_size: int = 4096, mark_undefined: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decoded outputs as one array, for comparing many at once: (codes
        [N, longest], lengths [N]); see `outputs.output_codes` for the codes."""
        return self.output_codes_of(self.encode_padded(seqs), batch_size, mark_undefined)

    def output_codes_of(
        self, encoded: tuple[np.ndarray, np.ndarray], batch_size: int = 4096, mark_undefined: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """`output_codes` of inputs already encoded (`encode_padded`), so that
        models sharing a vocabulary encode them once (`verify`)."""
        numerical = self.spec.numerical
        scale = self.logit_scale if mark_undefined and not numerical else None
        batches = [
            (picked, output_codes(logits, lengths, numerical, scale), lengths)
            for picked, logits, lengths in self._logit_batches(encoded, batch_size)
        ]
        if not batches:
            return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
        width = max(codes.shape[1] for _, codes, _ in batches)
        total = sum(len(picked) for picked, _, _ in batches)
        fill = np.nan if numerical else PAST_END
        codes_all = np.full((total, width), fill, dtype=batches[0][1].dtype)
        lengths_all = np.zeros(total, dtype=np.int64)
        for picked, codes, lengths in batches:
            codes_all[picked, : codes.shape[1]] = codes
            lengths_all[picked] = lengths
        return codes_all, lengths_all

    def run(
        self, seqs: Sequence[Sequence[Token]], batch_size: int = 4096, mark_undefined: bool = False
    ) -> list[list[Output]]:
        """Decoded outputs for each input sequence, BOS position dropped.

        Categorical outputs are the unembed argmax's value (ties break to the
        first column, as in tracr); numerical outputs are floats. With
        `mark_undefined`, a categorical position where every logit is at
        float-noise level (an Aggregate that selected nothing, where tracr's
        argmax picks among rounding noise) is None instead; see
        `raspsynth.tracr_bridge.outputs` for the rule.
        """
        codes, lengths = self.output_codes(seqs, batch_size, mark_undefined)
        return decode_codes(codes, lengths, self.spec.output_values)

    # -- symmetries ---------------------------------------------------------
    def permuted(self, seed: int = 0) -> Model:
        """The same model with its residual dimensions shuffled.

        Behaviour is unchanged (up to float summation order); nothing about
        the residual's layout survives, which is what synthesis must cope with.
        """
        perm = np.random.default_rng(checked_seed(seed)).permutation(self.d_model)
        layers = []
        for layer in self.layers:
            heads = tuple(
                HeadWeights(
                    query_w=h.query_w[perm],
                    query_b=h.query_b,
                    key_w=h.key_w[perm],
                    key_b=h.key_b,
                    value_w=h.value_w[perm],
                    value_b=h.value_b,
                    output_w=h.output_w[:, perm],
                )
                for h in layer.heads
            )
            layers.append(
                LayerWeights(
                    heads=heads,
                    attn_output_b=layer.attn_output_b[perm],
                    mlp_in_w=layer.mlp_in_w[perm],
                    mlp_in_b=layer.mlp_in_b,
                    mlp_out_w=layer.mlp_out_w[:, perm],
                    mlp_out_b=layer.mlp_out_b[perm],
                )
            )
        return Model(
            token_embed=self.token_embed[:, perm],
            pos_embed=self.pos_embed[:, perm],
            layers=tuple(layers),
            unembed=self.unembed[perm],
            spec=self.spec,
        )

    def rotated(self, seed: int = 0) -> Model:
        """The same model with its residual stream rotated by a random
        orthogonal matrix: behaviour kept (up to float rounding), tracr's
        one-hot layout destroyed, so nothing can be read off the weights
        block by block. The hard case for synthesis; used by experiments and
        tests."""
        rng = np.random.default_rng(checked_seed(seed))
        q, _ = np.linalg.qr(rng.normal(size=(self.d_model, self.d_model)))
        return self.in_basis(q, q.T)

    def mixed(self, seed: int = 0) -> Model:
        """The same model with its residual stream mapped by a random
        invertible matrix that is not orthogonal (singular values spread over
        [0.5, 2]): lengths and angles change too, not only the axes."""
        rng = np.random.default_rng(checked_seed(seed))
        q1, _ = np.linalg.qr(rng.normal(size=(self.d_model, self.d_model)))
        q2, _ = np.linalg.qr(rng.normal(size=(self.d_model, self.d_model)))
        scales = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=self.d_model))
        return self.in_basis(q1 * scales @ q2, q2.T / scales @ q1.T)

    def compressed(self, kind: str = "lossless", dim: int | None = None, seed: int = 0) -> Model:
        """The same model in a residual of `dim` dimensions.

        kind "lossless": the residual is projected onto the span of the
        states it visits on its probe inputs (`visited_basis`), then rotated
        at random. Each categorical block's dimensions sum to `one` there, so
        the span is narrower than tracr's D. `dim` None keeps the whole span
        (the visited-state rank); a smaller `dim` keeps its leading
        directions and is no longer lossless.

        kind "learned": tracr's `CompressedTransformer` form, written through
        a matrix trained from the lossless projection and read through its
        transpose (`raspsynth.tracr_bridge.learned_compression`). Raises
        `CompressionFailed` when training does not reach equal decoded
        outputs on every probe input."""
        if kind == "lossless":
            projection = self.visited_basis(dim, seed)
            return self.in_basis(projection, projection.T)
        if kind == "learned":
            from raspsynth.tracr_bridge.learned_compression import learn_compression

            learned = learn_compression(self, dim, seed)
            if not learned.exact:
                raise CompressionFailed(
                    f"learned compression to {learned.model.d_model} dimensions reached equal outputs on "
                    f"{learned.agreement:.1%} of probe inputs after {learned.steps} steps, not all"
                )
            return learned.model
        raise InputError(f"compressed kind must be 'lossless' or 'learned'; got {kind!r}")

    def in_residual(self, kind: str, seed: int = 0) -> Model:
        """The same model in the residual basis `kind` names (one of
        `RESIDUAL_KINDS`): "plain" (itself), "permuted", "rotated", "mixed",
        or compressed at the visited-state rank, "lossless" or "learned"
        (which raises `CompressionFailed` short of exact agreement)."""
        if kind == "plain":
            return self
        if kind in ("permuted", "rotated", "mixed"):
            return getattr(self, kind)(seed)
        if kind in ("lossless", "learned"):
            return self.compressed(kind, seed=seed)
        raise InputError(f"residual kind must be one of {', '.join(RESIDUAL_KINDS)}; got {kind!r}")

    def visited_grams(self) -> np.ndarray:
        """The uncentred Gram matrix [D, D] of the residual states after the
        embeddings and after every sublayer, over the probe inputs: one per
        point ([2 * num_layers + 1, D, D], float64); their eigenvectors span
        the states the residual visits there."""
        from raspsynth.tracr_bridge.probes import probe_inputs

        grams = np.zeros((2 * self.num_layers + 1, self.d_model, self.d_model))
        for _, states in self.visited_states(probe_inputs(self)):
            for gram, x in zip(grams, states.reshape(len(states), -1, self.d_model).astype(np.float64)):
                gram += x.T @ x
        return grams

    def visited_basis(
        self, dim: int | None = None, seed: int = 0, grams: np.ndarray | None = None
    ) -> np.ndarray:
        """Orthonormal columns [D, dim] spanning the leading `dim` directions
        of the states the residual visits on the probe inputs (the summed
        `visited_grams`, or `grams` when the caller has them: an uncentred
        SVD of every visited state), rotated by a random orthogonal matrix of
        `seed`. `dim` None takes the visited-state rank."""
        grams = self.visited_grams() if grams is None else grams
        vectors, rank = spanning_vectors(grams.sum(0))
        if dim is None:
            dim = rank
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or not 1 <= dim <= self.d_model:
            raise InputError(f"dim must be an integer from 1 to d_model ({self.d_model}); got {dim!r}")
        rng = np.random.default_rng(checked_seed(seed))
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        return vectors[:, :dim] @ q

    def in_basis(self, forward: np.ndarray, back: np.ndarray) -> Model:
        """The model with residual x written as x @ `forward` [D, D']:
        everything that writes the residual is multiplied by `forward`,
        everything that reads it by `back` [D', D] first. `back` is forward's
        inverse for a change of basis, its transpose for a projection onto
        orthonormal columns (exact on states inside their span)."""
        layers = tuple(
            LayerWeights(
                heads=tuple(
                    HeadWeights(
                        query_w=back @ h.query_w,
                        query_b=h.query_b,
                        key_w=back @ h.key_w,
                        key_b=h.key_b,
                        value_w=back @ h.value_w,
                        value_b=h.value_b,
                        output_w=h.output_w @ forward,
                    )
                    for h in layer.heads
                ),
                attn_output_b=layer.attn_output_b @ forward,
                mlp_in_w=back @ layer.mlp_in_w,
                mlp_in_b=layer.mlp_in_b,
                mlp_out_w=layer.mlp_out_w @ forward,
                mlp_out_b=layer.mlp_out_b @ forward,
            )
            for layer in self.layers
        )
        return Model(
            self.token_embed @ forward, self.pos_embed @ forward, layers, back @ self.unembed, self.spec
        )
