"""raspsynth-model/1 interchange files: `.npz` <-> `Model`.

In: a path to an `.npz` written by `Model.save` or any independent writer
following DESIGN.md (float32 arrays named as tracr's Haiku parameters plus a
0-d JSON string `meta`). Out: a validated `Model`. Anything that does not
follow the format raises `ModelFormatError` naming the problem; no pickles are
ever loaded.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from raspsynth.errors import ModelFormatError
from raspsynth.tracr_bridge.model import FORMAT_VERSION, HeadWeights, IOSpec, LayerWeights, Model

_META_INT_FIELDS = ("max_seq_len", "num_heads", "num_layers", "key_size", "mlp_hidden_size")


def load_model(path: str, spec: str | None = None) -> Model:
    """Read a raspsynth-model/1 file. Raises ModelFormatError if it is not one.

    A TransformerLens checkpoint (`.pt` / `.pth`) is read too, with its
    vocabularies from the JSON `spec` (default: beside it, `.json`); see
    `raspsynth.tracr_bridge.transformer_lens.load_transformer_lens`.
    """
    if str(path).lower().endswith((".pt", ".pth")):
        from raspsynth.tracr_bridge.transformer_lens import load_transformer_lens

        return load_transformer_lens(path, spec)
    if spec is not None:
        raise ModelFormatError(f"{path}: a spec file goes with TransformerLens checkpoints (.pt/.pth) only")
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ModelFormatError(f"{path}: not a readable .npz archive ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelFormatError(f"{path}: a single .npy array, not an .npz archive")
    with archive:
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
                raise ModelFormatError(f"{path}: array {name!r} is unreadable ({err})") from None
    if "meta" not in arrays:
        raise ModelFormatError(f"{path}: no 'meta' entry")
    meta = parse_meta(arrays.pop("meta"))
    try:
        return model_from_arrays(arrays, meta)
    except ModelFormatError as err:
        raise ModelFormatError(f"{path}: {err}") from None


def parse_meta(entry: np.ndarray) -> dict[str, Any]:
    """Decode and check the `meta` entry (a 0-d string array holding JSON)."""
    if entry.ndim != 0 or entry.dtype.kind not in "US":
        raise ModelFormatError(
            f"'meta' must be a 0-d string array, got dtype {entry.dtype} shape {entry.shape}"
        )
    text = entry.item()
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelFormatError(f"'meta' is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ModelFormatError("'meta' JSON must be an object")
    if meta.get("format") != FORMAT_VERSION:
        raise ModelFormatError(
            f"unknown format {meta.get('format')!r}; this reader understands {FORMAT_VERSION!r}"
        )
    for key in ("input_vocab", "bos", "pad", "output", "causal", *_META_INT_FIELDS):
        if key not in meta:
            raise ModelFormatError(f"'meta' lacks the field {key!r}")
    for key in _META_INT_FIELDS:
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0:
            raise ModelFormatError(f"'meta.{key}' must be a non-negative integer")
    if not isinstance(meta["input_vocab"], list):
        raise ModelFormatError("'meta.input_vocab' must be a list")
    if len(set(map(_hashable, meta["input_vocab"]))) != len(meta["input_vocab"]):
        raise ModelFormatError("'meta.input_vocab' has repeated tokens")
    for key in ("bos", "pad"):
        if meta[key] not in meta["input_vocab"]:
            raise ModelFormatError(f"'meta.{key}' ({meta[key]!r}) is not in input_vocab")
    if not isinstance(meta["causal"], bool):
        raise ModelFormatError("'meta.causal' must be true or false")
    output = meta["output"]
    if not isinstance(output, dict) or output.get("kind") not in ("categorical", "numerical"):
        raise ModelFormatError("'meta.output.kind' must be 'categorical' or 'numerical'")
    if output["kind"] == "categorical" and not isinstance(output.get("values"), list):
        raise ModelFormatError("categorical 'meta.output' needs a 'values' list")
    return meta


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        raise ModelFormatError(f"vocabulary entry {value!r} is not a scalar") from None
    return value


def array_shapes(meta: Mapping[str, Any], d_model: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every array of a raspsynth-model/1 model, in file order."""
    num_layers, num_heads = meta["num_layers"], meta["num_heads"]
    key_size, hidden = meta["key_size"], meta["mlp_hidden_size"]
    out_dim = 1 if meta["output"]["kind"] == "numerical" else len(meta["output"]["values"])
    shapes = {
        "token_embed/embeddings": (len(meta["input_vocab"]), d_model),
        "pos_embed/embeddings": (meta["max_seq_len"] + 1, d_model),
        "unembed": (d_model, out_dim),
    }
    for i in range(num_layers):
        attn, mlp = f"transformer/layer_{i}/attn", f"transformer/layer_{i}/mlp"
        for proj in ("query", "key", "value"):
            shapes[f"{attn}/{proj}/w"] = (d_model, num_heads * key_size)
            shapes[f"{attn}/{proj}/b"] = (num_heads * key_size,)
        shapes[f"{attn}/linear/w"] = (num_heads * key_size, d_model)
        shapes[f"{attn}/linear/b"] = (d_model,)
        shapes[f"{mlp}/linear_1/w"] = (d_model, hidden)
        shapes[f"{mlp}/linear_1/b"] = (hidden,)
        shapes[f"{mlp}/linear_2/w"] = (hidden, d_model)
        shapes[f"{mlp}/linear_2/b"] = (d_model,)
    return shapes


def model_from_arrays(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Model:
    """Build a `Model` from arrays named as in raspsynth-model/1 and its meta.

    Checks that every array is present, finite and of the shape the meta and
    the token embedding imply; raises ModelFormatError otherwise.
    """
    arrays = dict(arrays)
    vocab = [_hashable(t) for t in meta["input_vocab"]]
    num_layers, num_heads, key_size = meta["num_layers"], meta["num_heads"], meta["key_size"]
    numerical = meta["output"]["kind"] == "numerical"

    token = _take(arrays, "token_embed/embeddings", ndim=2)
    d_model = token.shape[1]
    expected = array_shapes(meta, d_model)
    checked = {"token_embed/embeddings": token}
    for name, shape in expected.items():
        if name != "token_embed/embeddings":
            checked[name] = _take(arrays, name, ndim=len(shape))
        if checked[name].shape != shape:
            raise ModelFormatError(f"array {name!r} has shape {checked[name].shape}, expected {shape}")
    if arrays:
        raise ModelFormatError(f"unexpected arrays {sorted(arrays)} for a {num_layers}-layer model")

    def head_slice(name: str, h: int, axis: int) -> np.ndarray:
        index = [slice(None)] * checked[name].ndim
        index[axis] = slice(h * key_size, (h + 1) * key_size)
        return checked[name][tuple(index)]

    layers = []
    for i in range(num_layers):
        attn, mlp = f"transformer/layer_{i}/attn", f"transformer/layer_{i}/mlp"
        heads = tuple(
            HeadWeights(
                query_w=head_slice(f"{attn}/query/w", h, 1),
                query_b=head_slice(f"{attn}/query/b", h, 0),
                key_w=head_slice(f"{attn}/key/w", h, 1),
                key_b=head_slice(f"{attn}/key/b", h, 0),
                value_w=head_slice(f"{attn}/value/w", h, 1),
                value_b=head_slice(f"{attn}/value/b", h, 0),
                output_w=head_slice(f"{attn}/linear/w", h, 0),
            )
            for h in range(num_heads)
        )
        layers.append(
            LayerWeights(
                heads=heads,
                attn_output_b=checked[f"{attn}/linear/b"],
                mlp_in_w=checked[f"{mlp}/linear_1/w"],
                mlp_in_b=checked[f"{mlp}/linear_1/b"],
                mlp_out_w=checked[f"{mlp}/linear_2/w"],
                mlp_out_b=checked[f"{mlp}/linear_2/b"],
            )
        )
    spec = IOSpec(
        input_vocab=tuple(vocab),
        bos=meta["bos"],
        pad=meta["pad"],
        max_seq_len=meta["max_seq_len"],
        output_values=None if numerical else tuple(meta["output"]["values"]),
        causal=meta["causal"],
    )
    return Model(
        token_embed=checked["token_embed/embeddings"],
        pos_embed=checked["pos_embed/embeddings"],
        layers=tuple(layers),
        unembed=checked["unembed"],
        spec=spec,
    )


def _take(arrays: dict[str, np.ndarray], name: str, ndim: int) -> np.ndarray:
    if name not in arrays:
        raise ModelFormatError(f"missing array {name!r}")
    array = np.asarray(arrays.pop(name))
    if array.dtype.kind not in "fiu":
        raise ModelFormatError(f"array {name!r} has non-numeric dtype {array.dtype}")
    if array.ndim != ndim:
        raise ModelFormatError(f"array {name!r} has {array.ndim} dimensions, expected {ndim}")
    if not np.all(np.isfinite(array)):
        raise ModelFormatError(f"array {name!r} contains NaN or inf")
    return array.astype(np.float32)
