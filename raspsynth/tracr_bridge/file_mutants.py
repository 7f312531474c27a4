"""Corrupted variants of a raspsynth-model/1 file, one generator per class of
damage: what the fuzz test and `experiments/fuzz_interchange.py` feed to
`load_model`.

In: a valid model file, a damage class (`KINDS`), a seeded generator and a
path. Out: a mutant written at the path (a file, or for some classes a FIFO,
a directory or nothing at all). Every class the issue tracker has seen is
here: byte flips in deflated members, truncation, npy headers declaring
10^12 elements or holding garbage, meta JSON nested 10^5 deep or not an npy
member, meta claiming 10^7 layers or 10^9 heads with key_size 0, zip bombs,
unknown and duplicate members, values beyond float32, NaN, wrong dtypes and
shapes, BOS equal to PAD or to `true`, null, NaN and repeated vocabulary
entries, empty output values; and valid variants (float64 arrays, key_size 0
written consistently) that must load.
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


def read_arrays(path: str | Path) -> tuple[Arrays, dict]:
    """The arrays and the parsed meta of a valid model file."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays, json.loads(arrays.pop("meta").item())


def _npz_bytes(arrays: Arrays, meta: Any, compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    meta_entry = np.array(meta if isinstance(meta, str) else json.dumps(meta))
    (np.savez_compressed if compress else np.savez)(buffer, meta=meta_entry, **arrays)
    return buffer.getvalue()


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # a duplicate name is the point of one class
        for name, payload in members:
            archive.writestr(name, payload)
    return buffer.getvalue()


def _npy_header(shape: tuple, descr: str = "<f4") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _flip(data: bytes, rng: np.random.Generator, start: int = 0, end: int | None = None) -> bytes:
    out = bytearray(data)
    end = len(out) if end is None else end
    for _ in range(int(rng.integers(1, 17))):
        i = int(rng.integers(start, max(start + 1, end)))
        out[i] ^= 1 << int(rng.integers(8))
    return bytes(out)


JUNK = [-1, 0, 10**7, 10**12, 1.5, "x", None, True, [], {}, [1, [2]], float("nan"), 2**63]


def _meta_change(change: Callable[[dict, np.random.Generator], Any]) -> Callable:
    def make(source: Path, rng: np.random.Generator) -> bytes:
        arrays, meta = read_arrays(source)
        return _npz_bytes(arrays, change(meta, rng) or meta)

    return make


def _set_field(meta: dict, rng: np.random.Generator) -> None:
    key = sorted(meta)[int(rng.integers(len(meta)))]
    meta[key] = JUNK[int(rng.integers(len(JUNK)))]


def _drop_field(meta: dict, rng: np.random.Generator) -> None:
    del meta[sorted(meta)[int(rng.integers(len(meta)))]]


def _vocab_damage(meta: dict, rng: np.random.Generator) -> None:
    vocab = meta["input_vocab"]
    choice = int(rng.integers(7))
    if choice == 0:
        meta["input_vocab"] = vocab + [vocab[0]]
    elif choice == 1:
        vocab[0] = None
    elif choice == 2:
        vocab[0] = float("nan")
    elif choice == 3:
        meta["bos"] = True
    elif choice == 4:
        meta["pad"] = meta["bos"]
    elif choice == 5 and meta["output"]["kind"] == "categorical":
        meta["output"]["values"] = []
    else:
        meta["output"] = {"kind": "categorical", "values": [0, 0, None]}


def _array_change(change: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> Callable:
    def make(source: Path, rng: np.random.Generator) -> bytes:
        arrays, meta = read_arrays(source)
        name = sorted(arrays)[int(rng.integers(len(arrays)))]
        arrays[name] = change(arrays[name], rng)
        return _npz_bytes(arrays, meta)

    return make


def _dtype(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    choice = int(rng.integers(5))
    if choice == 0:
        return array.astype(np.complex64)
    if choice == 1:
        return array.astype(bool)
    if choice == 2:
        return array.astype(str)
    if choice == 3:
        return np.full(array.shape, 1e39)  # beyond float32
    return array.astype(np.float16)


def _shape(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if array.ndim == 2 and int(rng.integers(2)):
        return array.T
    return array.reshape(-1)[: max(0, array.size - 1)]


def _poison(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    array = array.astype(np.float32).copy()
    if array.size:
        array.flat[int(rng.integers(array.size))] = [np.nan, np.inf, -np.inf][int(rng.integers(3))]
    return array


def _byte_flip(source: Path, rng: np.random.Generator) -> bytes:
    return _flip(source.read_bytes(), rng)


def _member_flip(source: Path, rng: np.random.Generator) -> bytes:
    """Flips inside one member's deflated data (zlib errors, CRC failures)."""
    data = source.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        info = infos[int(rng.integers(len(infos)))]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    return _flip(data, rng, start, start + info.compress_size)


def _truncate(source: Path, rng: np.random.Generator) -> bytes:
    data = source.read_bytes()
    return data[: int(rng.integers(len(data)))]


def _header_huge(source: Path, rng: np.random.Generator) -> bytes:
    members = _members(source.read_bytes())
    payload = _npy_header((10**6, 10**6)) + b"\0" * 64
    if int(rng.integers(2)):
        i = int(rng.integers(len(members)))
        members[i] = (members[i][0], payload)
    else:
        members.append(("unknown_member.npy", payload))
    return _zip(members)


def _header_garbage(source: Path, rng: np.random.Generator) -> bytes:
    members = _members(source.read_bytes())
    i = int(rng.integers(len(members)))
    name, payload = members[i]
    garbage = [b"{'descr': '<f4', 'shape': (3,", b"\x00\xff{{{", b"{'descr': object, 'shape': ()}"]
    header = garbage[int(rng.integers(len(garbage)))]
    members[i] = (name, b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload[128:])
    return _zip(members)


def _deep_meta(source: Path, rng: np.random.Generator) -> bytes:
    arrays, _ = read_arrays(source)
    depth = 10**5
    return _npz_bytes(arrays, "[" * depth + "]" * depth)


def _meta_not_npy(source: Path, rng: np.random.Generator) -> bytes:
    members = [(n, p) for n, p in _members(source.read_bytes()) if n != "meta.npy"]
    _, meta = read_arrays(source)
    return _zip(members + [("meta", json.dumps(meta).encode())])


def _huge_counts(meta: dict, rng: np.random.Generator) -> None:
    if int(rng.integers(2)):
        meta["num_layers"] = [10**7, 10**9][int(rng.integers(2))]
    else:
        meta["num_heads"], meta["key_size"] = 10**9, 0


def _zip_bomb(size: int) -> Callable:
    """A member of `size` bytes of zeros (a multiple of 1 MiB) that deflates
    about 1000-fold, under a real array's name or an unknown one."""

    def make(source: Path, rng: np.random.Generator) -> bytes:
        members = _members(source.read_bytes())
        names = [m[0] for m in members if m[0] != "meta.npy"]
        name = names[0] if int(rng.integers(2)) else "bomb.npy"
        members = [m for m in members if m[0] != name]
        header = _npy_header((size // 4,))
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = b"\0" * (1 << 20)
        crc = zlib.crc32(header)
        parts = [compressor.compress(header)]
        for _ in range(size // len(chunk)):
            parts.append(compressor.compress(chunk))
            crc = zlib.crc32(chunk, crc)
        parts.append(compressor.flush())
        return _append_raw_member(_zip(members), name, b"".join(parts), crc, len(header) + size)

    return make


def _append_raw_member(data: bytes, name: str, deflated: bytes, crc: int, size: int) -> bytes:
    """`data`'s archive (no comment) plus one member whose deflated bytes are
    given, so the bomb is never held uncompressed."""
    end = data.rfind(b"PK\x05\x06")
    count, central_size, central_offset = struct.unpack("<HII", data[end + 10 : end + 20])
    local = data[:central_offset]
    central = data[central_offset : central_offset + central_size]
    encoded = name.encode()
    offset = len(local)
    local += (
        struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(deflated), size, len(encoded), 0)
        + encoded
        + deflated
    )
    fields = (20, 20, 0, 8, 0, 0, crc, len(deflated), size, len(encoded), 0, 0, 0, 0, 0, offset)
    central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", *fields) + encoded
    tail = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count + 1, count + 1, len(central), len(local), 0)
    return local + central + tail


def _duplicate_member(source: Path, rng: np.random.Generator) -> bytes:
    members = _members(source.read_bytes())
    return _zip(members + [members[int(rng.integers(len(members)))]])


def _unknown_member(source: Path, rng: np.random.Generator) -> bytes:
    members = _members(source.read_bytes())
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3, dtype=np.float32))
    return _zip(members + [("transformer/layer_99/attn/extra.npy", buffer.getvalue())])


def _random_bytes(source: Path, rng: np.random.Generator) -> bytes:
    return rng.bytes(int(rng.integers(0, 4096)))


def _float64(source: Path, rng: np.random.Generator) -> bytes:
    arrays, meta = read_arrays(source)
    return _npz_bytes({k: v.astype(np.float64) for k, v in arrays.items()}, meta, compress=False)


def _key_size_zero(source: Path, rng: np.random.Generator) -> bytes:
    """A valid model whose heads have key_size 0: they write nothing."""
    arrays, meta = read_arrays(source)
    for name, array in arrays.items():
        if "/attn/" in name and "/linear/b" not in name:
            if name.endswith("linear/w"):
                arrays[name] = array[:0]
            elif name.endswith("/w"):
                arrays[name] = array[:, :0]
            else:
                arrays[name] = array[:0]
    meta["key_size"] = 0
    return _npz_bytes(arrays, meta)


# Class of damage -> writer of the mutant's bytes. "fifo", "directory" and
# "missing" are paths rather than contents; `write_mutant` makes them.
GENERATORS: dict[str, Callable[[Path, np.random.Generator], bytes]] = {
    "byte flip": _byte_flip,
    "deflated member flip": _member_flip,
    "truncated": _truncate,
    "random bytes": _random_bytes,
    "npy header 10^12 elements": _header_huge,
    "npy header garbage": _header_garbage,
    "meta nested 10^5 deep": _deep_meta,
    "meta not an npy member": _meta_not_npy,
    "meta field junk": _meta_change(_set_field),
    "meta field missing": _meta_change(_drop_field),
    "meta vocabulary damage": _meta_change(_vocab_damage),
    "meta huge layer/head count": _meta_change(_huge_counts),
    "array dtype": _array_change(_dtype),
    "array shape": _array_change(_shape),
    "array NaN/inf": _array_change(_poison),
    "duplicate member": _duplicate_member,
    "unknown member": _unknown_member,
    "zip bomb 64 MB": _zip_bomb(64 << 20),
    "valid: float64 arrays": _float64,
    "valid: key_size 0": _key_size_zero,
}
PATH_KINDS = ("fifo", "directory", "missing")
KINDS = (*GENERATORS, *PATH_KINDS)


def write_mutant(kind: str, source: Path, rng: np.random.Generator, path: Path) -> Path:
    """Write a mutant of `source` of class `kind` at `path`; returns the path."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "missing":
        pass
    else:
        path.write_bytes(GENERATORS[kind](source, rng))
    return path
