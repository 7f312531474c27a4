"""Dataset shards: the on-disk format of generated training data.

A dataset directory holds:

    manifest.json          {"format": "raspsynth-data/1", "n", "seed",
                            "shard_size", "splits", "sampler": {...}}
    shard-00000.npz        every program's weights, arrays named
                           "<record>/<raspsynth-model/1 array name>"
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

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from raspsynth.errors import RaspsynthError
from raspsynth.program.ir import Program
from raspsynth.tracr_bridge import Model
from raspsynth.tracr_bridge.interchange import model_from_arrays

DATA_FORMAT = "raspsynth-data/1"


class DatasetError(RaspsynthError):
    """A dataset directory that is missing, foreign or inconsistent."""


def shard_stem(index: int) -> str:
    return f"shard-{index:05d}"


def write_shard(directory: Path, index: int, records: list[dict[str, Any]], models: list[Model]) -> None:
    """Write shard `index` atomically: weights first, then the index file."""
    stem = directory / shard_stem(index)
    arrays = {
        f"{record['key']}/{name}": array
        for record, model in zip(records, models)
        for name, array in model.arrays().items()
    }
    tmp_npz = stem.with_suffix(".npz.tmp")
    with open(tmp_npz, "wb") as f:
        np.savez_compressed(f, **arrays)
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
        records = [r for r in read_index(directory, index) if split is None or r["split"] == split]
        if not records:
            continue
        with np.load(directory / f"{shard_stem(index)}.npz", allow_pickle=False) as archive:
            names_by_key: dict[str, list[str]] = {}
            for name in archive.files:
                names_by_key.setdefault(name.split("/", 1)[0], []).append(name)
            for record in records:
                names = names_by_key.get(record["key"], [])
                arrays = {n.split("/", 1)[1]: archive[n] for n in names}
                yield record, Program.from_json(record["program"]), model_from_arrays(arrays, record["meta"])
