"""raspsynth-model/1 interchange files: `.npz` <-> `Model`.

In: a path to an `.npz` written by `Model.save` or any independent writer
following DESIGN.md (float32 arrays named as tracr's Haiku parameters plus a
0-d JSON string `meta`). Out: a validated `Model`. Anything that does not
follow the format raises `ModelFormatError` naming the file and the problem;
no pickles are ever loaded.

The file is untrusted. It is read as a zip archive member by member, and
nothing is unpacked before it is checked: the path must be a regular file
(a FIFO would block); `meta` is read first, capped at `MAX_META_BYTES`; the
number of members must be what `meta.num_layers` implies before any shape
is built from it; every member's npy header (dtype, shape) is parsed from its
first bytes and must agree with the meta, with the member's declared size and
with `MAX_MODEL_BYTES` before its data is inflated. So a load allocates what
the headers and the meta consistently declare, and a zip bomb, a header
claiming 10^12 elements or a meta claiming 10^7 layers is refused in
microseconds. Weights are cast to float32 before the finiteness check, so a
float64 value beyond float32's range is refused rather than turned to inf.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from raspsynth.errors import ModelFileNotFound, ModelFormatError
from raspsynth.tracr_bridge.model import (
    FORMAT_VERSION,
    HeadWeights,
    IOSpec,
    LayerWeights,
    Model,
)
from raspsynth.tracr_bridge.outputs import value_key

_META_INT_FIELDS = ("max_seq_len", "num_heads", "num_layers", "key_size", "mlp_hidden_size")
MAX_META_BYTES = 16 << 20  # a meta JSON (vocabularies included) larger than this is refused
MAX_MODEL_BYTES = 8 << 30  # unpacked weights; far beyond any tracr model that fits in memory
MAX_HEADS = 4096  # per layer; the arrays bound num_heads * key_size, not num_heads alone
ARRAYS_PER_LAYER = 12  # query, key, value, linear: w and b; mlp linear_1, linear_2: w and b
GLOBAL_ARRAYS = 3  # token_embed, pos_embed, unembed


def load_model(path: str | os.PathLike, spec: str | None = None) -> Model:
    """Read a raspsynth-model/1 file. Raises ModelFormatError if it is not one
    (`ModelFileNotFound`, also a FileNotFoundError, if there is no file).

    A TransformerLens checkpoint (`.pt` / `.pth`) is read too, with its
    vocabularies from the JSON `spec` (default: beside it, `.json`); see
    `raspsynth.tracr_bridge.transformer_lens.load_transformer_lens`.
    """
    path = _checked_path(path)
    if path.lower().endswith((".pt", ".pth")):
        from raspsynth.tracr_bridge.transformer_lens import load_transformer_lens

        return load_transformer_lens(path, spec)
    if spec is not None:
        raise ModelFormatError(f"{path}: a spec file goes with TransformerLens checkpoints (.pt/.pth) only")
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise ModelFormatError(f"{path}: a single .npy array, not an .npz archive")
        archive = zipfile.ZipFile(path)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, RuntimeError) as err:
        raise ModelFormatError(f"{path}: not a readable .npz archive ({err})") from None
    try:
        with archive:
            arrays, meta = _read_archive(archive, os.path.getsize(path))
        return model_from_arrays(arrays, meta)
    except ModelFormatError as err:
        raise ModelFormatError(f"{path}: {err}") from None


def _checked_path(path: Any) -> str:
    """The path as a string, refused unless it names a regular file."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise ModelFormatError(f"a model path must be a string or path, not {type(path).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelFileNotFound(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise ModelFormatError(f"{path}: cannot be read ({err})") from None
    if stat.S_ISDIR(mode):
        raise ModelFormatError(f"{path}: a directory, not a model file")
    if not stat.S_ISREG(mode):
        raise ModelFormatError(f"{path}: not a regular file (a pipe or device cannot hold a model)")
    return path


def _read_archive(archive: zipfile.ZipFile, file_size: int) -> tuple[dict[str, np.ndarray], dict]:
    """Every array of the archive and its parsed meta, checked as the module
    docstring says before anything is inflated."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise ModelFormatError(f"member {info.filename!r} is not an .npy array")
        name = info.filename[: -len(".npy")]
        if name in members:
            raise ModelFormatError(f"array {name!r} appears twice")
        members[name] = info
    if "meta" not in members:
        raise ModelFormatError("no 'meta' entry")
    if members["meta"].file_size > MAX_META_BYTES:
        size = members["meta"].file_size
        raise ModelFormatError(f"'meta' declares {size} bytes (at most {MAX_META_BYTES})")
    _read_header(archive, members["meta"], "meta", kinds="US")
    meta = parse_meta(_read_member(archive, members.pop("meta"), "meta"))
    expected_count = GLOBAL_ARRAYS + ARRAYS_PER_LAYER * meta["num_layers"]
    if expected_count != len(members):
        # Name what differs, but build names only when the count is plausible:
        # a meta claiming 10^7 layers must not make 10^8 strings.
        if meta["num_layers"] <= len(members):
            names = array_shapes(meta, 0)
            missing = [name for name in names if name not in members]
            if missing:
                raise ModelFormatError(f"missing array {missing[0]!r} ({len(missing)} missing in all)")
            unexpected = sorted(set(members) - set(names))
            raise ModelFormatError(f"unexpected arrays {unexpected} for a {meta['num_layers']}-layer model")
        raise ModelFormatError(
            f"'meta' declares {meta['num_layers']} layers ({expected_count} arrays), but the file holds "
            f"{len(members)} arrays"
        )
    headers = {name: _read_header(archive, info, name) for name, info in members.items()}
    token = headers.get("token_embed/embeddings")
    if token is None:
        raise ModelFormatError("missing array 'token_embed/embeddings'")
    if len(token[1]) != 2:
        raise ModelFormatError(f"array 'token_embed/embeddings' has {len(token[1])} dimensions, expected 2")
    expected = array_shapes(meta, token[1][1])
    total = 0
    for name, shape in expected.items():
        if name not in headers:
            raise ModelFormatError(f"missing array {name!r}")
        dtype, declared = headers[name]
        if len(declared) != len(shape):
            raise ModelFormatError(f"array {name!r} has {len(declared)} dimensions, expected {len(shape)}")
        if declared != shape:
            raise ModelFormatError(f"array {name!r} has shape {declared}, expected {shape}")
        total += dtype.itemsize * math.prod(shape)
    unexpected = sorted(set(headers) - set(expected))
    if unexpected:
        raise ModelFormatError(f"unexpected arrays {unexpected} for a {meta['num_layers']}-layer model")
    if total > MAX_MODEL_BYTES:
        raise ModelFormatError(f"the weights would take {total} bytes (at most {MAX_MODEL_BYTES})")
    return {name: _read_member(archive, members[name], name) for name in expected}, meta


def _read_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, kinds: str = "fiu"
) -> tuple[np.dtype, tuple]:
    """(dtype, shape) from a member's npy header, read from its first bytes;
    the dtype must be of one of `kinds` (numbers; strings for meta) and the
    data it declares must fill the member's declared size exactly."""
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"npy version {version}")
            shape, _, dtype = read[version](stream)
            header_bytes = stream.tell()
    except ModelFormatError:
        raise
    except Exception as err:  # numpy's header parser raises assorted types on garbage
        why = f"{type(err).__name__}: {err}"
        raise ModelFormatError(f"array {name!r} has no valid npy header ({why})") from None
    if dtype.hasobject or dtype.kind not in kinds:
        if kinds == "US":
            raise ModelFormatError(f"'meta' is unreadable: dtype {dtype}; it must be a 0-d string array")
        raise ModelFormatError(f"array {name!r} has non-numeric dtype {dtype}")
    if math.prod(shape) * dtype.itemsize + header_bytes != info.file_size:
        raise ModelFormatError(
            f"array {name!r} declares shape {shape} of {dtype}, which does not fill its {info.file_size} "
            "bytes in the archive"
        )
    return dtype, tuple(int(n) for n in shape)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    try:
        with archive.open(info) as stream:
            return np.lib.format.read_array(stream, allow_pickle=False)
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError) as err:
        raise ModelFormatError(f"array {name!r} is unreadable ({type(err).__name__}: {err})") from None


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
    except (json.JSONDecodeError, RecursionError) as err:
        raise ModelFormatError(f"'meta' is not valid JSON ({type(err).__name__})") from None
    check_meta(meta)
    return meta


def check_meta(meta: Any) -> None:
    """Raise ModelFormatError unless `meta` is a valid raspsynth-model/1 meta:
    every field present and typed; vocabularies of distinct scalars (no
    null, no NaN; True is not 1); BOS and PAD distinct members of the input
    vocabulary; a non-empty list of categorical output values."""
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
    if meta["num_heads"] > MAX_HEADS:
        raise ModelFormatError(f"'meta.num_heads' is {meta['num_heads']} (at most {MAX_HEADS})")
    if not isinstance(meta["input_vocab"], list):
        raise ModelFormatError("'meta.input_vocab' must be a list")
    vocab = _distinct_values(meta["input_vocab"], "meta.input_vocab")
    for key in ("bos", "pad"):
        if not isinstance(meta[key], str):
            raise ModelFormatError(f"'meta.{key}' must be a string token; got {meta[key]!r}")
        if value_key(meta[key]) not in vocab:
            raise ModelFormatError(f"'meta.{key}' ({meta[key]!r}) is not in input_vocab")
    if meta["bos"] == meta["pad"]:
        raise ModelFormatError(f"'meta.bos' and 'meta.pad' are the same token ({meta['bos']!r})")
    if not isinstance(meta["causal"], bool):
        raise ModelFormatError("'meta.causal' must be true or false")
    output = meta["output"]
    if not isinstance(output, dict) or output.get("kind") not in ("categorical", "numerical"):
        raise ModelFormatError("'meta.output.kind' must be 'categorical' or 'numerical'")
    if output["kind"] == "categorical":
        if not isinstance(output.get("values"), list) or not output["values"]:
            raise ModelFormatError("categorical 'meta.output' needs a non-empty 'values' list")
        _distinct_values(output["values"], "meta.output.values")


def _distinct_values(values: list, field: str) -> set[tuple]:
    keys = set()
    for value in values:
        if value is None or not isinstance(value, str | int | float):
            raise ModelFormatError(f"'{field}' holds {value!r}; entries are strings or numbers")
        if isinstance(value, float) and not math.isfinite(value):
            raise ModelFormatError(f"'{field}' holds {value!r}; entries must be finite")
        key = value_key(value)
        if key in keys:
            raise ModelFormatError(f"'{field}' has a repeated entry, {value!r}")
        keys.add(key)
    return keys


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
    check_meta(meta)
    arrays = dict(arrays)
    vocab = list(meta["input_vocab"])
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
    # Cast first: a float64 beyond float32's range becomes inf here, and is refused.
    with np.errstate(over="ignore"):
        array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ModelFormatError(f"array {name!r} contains NaN or inf (in float32)")
    return array
