"""Dataset shards: the on-disk format of generated training data.

A dataset directory holds:

    manifest.json          {"format": "raspsynth-data/1", "n", "seed",
                            "shard_size", "splits", "sampler": {...}}
    shard-00000.npz        one float32 vector per candidate, named by its
                           key: its raspsynth-model/1 arrays raveled in
                           `array_shapes` order (candidates dropped as
                           duplicates stay unindexed)
    shard-00000.jsonl      one record per program: key, hash, split,
                           program (IR JSON), vocab, max_seq_len, meta
                           (raspsynth-model/1 meta), num_sops, op kinds,
                           num_layers, d_model
    ...

A shard's `.jsonl` is written last and renamed into place atomically, so a
shard exists exactly when its index does; a killed run leaves at most
temporary files, which are ignored and overwritten.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from raspsynth.errors import RaspsynthError
from raspsynth.program.ir import Program
from raspsynth.tracr_bridge import Model
from raspsynth.tracr_bridge.interchange import array_shapes, model_from_arrays

DATA_FORMAT = "raspsynth-data/1"


class DatasetError(RaspsynthError):
    """A dataset directory that is missing, foreign or inconsistent."""


def shard_stem(index: int) -> str:
    return f"shard-{index:05d}"


def pack_weights(keys: list[str], models: list[Model]) -> bytes:
    """A compressed npz (as bytes) holding one flat float32 vector per model.

    Each vector is the model's raspsynth-model/1 arrays raveled in
    `array_shapes` order; its meta (in the record) gives the shapes back. One
    entry per program keeps zip overhead low; workers pack their own shards,
    so the process that deduplicates and writes only moves bytes.
    """
    buffer = io.BytesIO()
    flat = {
        key: np.concatenate([a.ravel() for a in model.arrays().values()]) for key, model in zip(keys, models)
    }
    np.savez_compressed(buffer, **flat)
    return buffer.getvalue()


def unpack_weights(flat: np.ndarray, meta: dict[str, Any], d_model: int) -> Model:
    """The `Model` whose arrays `pack_weights` raveled into `flat`."""
    arrays, offset = {}, 0
    for name, shape in array_shapes(meta, d_model).items():
        size = int(np.prod(shape))
        arrays[name] = flat[offset : offset + size].reshape(shape)
        offset += size
    if offset != flat.size:
        raise DatasetError(f"packed weights have {flat.size} values, the meta implies {offset}")
    return model_from_arrays(arrays, meta)


def write_shard(directory: Path, index: int, records: list[dict[str, Any]], weights: bytes) -> None:
    """Write shard `index` atomically: weights first, then the index file.

    `weights` may hold candidates the index leaves out (duplicates of
    programs in earlier shards); the index alone defines the dataset.
    """
    stem = directory / shard_stem(index)
    tmp_npz = stem.with_suffix(".npz.tmp")
    tmp_npz.write_bytes(weights)
    os.replace(tmp_npz, stem.with_suffix(".npz"))
    tmp_index = stem.with_suffix(".jsonl.tmp")
    tmp_index.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    os.replace(tmp_index, stem.with_suffix(".jsonl"))


def complete_shards(directory: Path) -> list[int]:
    """Indices of the consecutive complete shards 0, 1, ... in `directory`."""
    done, index = [], 0
    while (directory / f"{shard_stem(index)}.jsonl").exists():
        done.append(index)
        index += 1
    return done


def read_index(directory: Path, index: int) -> list[dict[str, Any]]:
    path = directory / f"{shard_stem(index)}.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: unreadable shard index ({err})") from None


def iter_records(directory: str | Path, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Every record of the dataset (optionally of one split), in shard order."""
    directory = Path(directory)
    if not (directory / "manifest.json").exists():
        raise DatasetError(f"{directory}: not a raspsynth dataset (no manifest.json)")
    for index in complete_shards(directory):
        for record in read_index(directory, index):
            if split is None or record["split"] == split:
                yield record


def load_examples(
    directory: str | Path, split: str | None = None
) -> Iterator[tuple[dict[str, Any], Program, Model]]:
    """(record, program IR, compiled Model) for every program, in shard order."""
    directory = Path(directory)
    for index in complete_shards(directory):
        yield from load_shard(directory, index, split)


def load_shard(
    directory: str | Path, index: int, split: str | None = None
) -> Iterator[tuple[dict[str, Any], Program, Model]]:
    """(record, program IR, compiled Model) for every program of one shard."""
    directory = Path(directory)
    records = [r for r in read_index(directory, index) if split is None or r["split"] == split]
    if not records:
        return
    with np.load(directory / f"{shard_stem(index)}.npz", allow_pickle=False) as archive:
        for record in records:
            model = unpack_weights(archive[record["key"]], record["meta"], record["d_model"])
            yield record, Program.from_json(record["program"]), model
