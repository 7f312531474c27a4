"""Dataset generation: dedupe, splits, resumption, backends, stats, CLI."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pytest

from raspsynth.cli import main
from raspsynth.data import DatasetError, dataset_stats, generate, iter_records, load_examples
from raspsynth.program.ir import Program
from raspsynth.program.sampler import SamplerConfig
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.rasp_conversion import to_rasp

N, SHARD = 60, 16


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def same_dataset(a: Path, b: Path) -> bool:
    names = files(a)
    if names != files(b):
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    summary = generate(out, N, seed=5, shard_size=SHARD, progress=False)
    assert summary["programs"] == N
    return out


def test_dataset_is_deduplicated_split_by_hash_and_loadable(uninterrupted):
    records = list(iter_records(uninterrupted))
    assert len(records) == N
    hashes = [r["hash"] for r in records]
    assert len(set(hashes)) == N
    splits = {r["split"] for r in records}
    assert splits <= {"train", "val", "test"} and "train" in splits
    examples = list(load_examples(uninterrupted))
    for record, program, model in examples[:10]:
        recompiled = compile_program(to_rasp(program), record["vocab"], record["max_seq_len"])
        for name, array in recompiled.arrays().items():
            np.testing.assert_array_equal(model.arrays()[name], array)
    assert [r["hash"] for r, _, _ in load_examples(uninterrupted, split="train")] == [
        r["hash"] for r in records if r["split"] == "train"
    ]
    assert isinstance(examples[0][1], Program)


def test_kill_and_resume_equals_one_uninterrupted_run(tmp_path, uninterrupted):
    out = tmp_path / "resumed"
    generate(out, N, seed=5, shard_size=SHARD, progress=False, max_shards=2)  # "killed" after 2 shards
    assert len(list(iter_records(out))) < N
    # A kill mid-write leaves temporary files behind; they must not matter.
    (out / "shard-00002.npz.tmp").write_bytes(b"partial")
    (out / "shard-00002.jsonl.tmp").write_text("{partial")
    generate(out, N, seed=5, shard_size=SHARD, progress=False)
    for leftover in out.glob("*.tmp"):
        leftover.unlink()
    assert same_dataset(out, uninterrupted)


def test_a_time_limit_stops_at_a_shard_boundary_and_resumes(tmp_path, uninterrupted):
    out = tmp_path / "timed"
    summary = generate(out, N, seed=5, shard_size=SHARD, progress=False, max_minutes=0)
    assert summary["programs"] == 0 and not list(iter_records(out))  # out of time before the first shard
    generate(out, N, seed=5, shard_size=SHARD, progress=False, max_minutes=10)
    assert same_dataset(out, uninterrupted)


def test_process_pool_gives_the_same_dataset(tmp_path, uninterrupted):
    out = tmp_path / "pool"
    generate(out, N, seed=5, shard_size=SHARD, workers=2, progress=False)
    assert same_dataset(out, uninterrupted)


def test_ray_backend_gives_the_same_dataset(tmp_path, uninterrupted):
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    try:
        generate(out, N, seed=5, shard_size=SHARD, workers=2, backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert same_dataset(out, uninterrupted)


def test_conflicting_settings_and_foreign_directories_are_refused(tmp_path, uninterrupted):
    with pytest.raises(DatasetError, match="seed"):
        generate(uninterrupted, N, seed=6, shard_size=SHARD, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        generate(foreign, 5, progress=False)
    with pytest.raises(DatasetError, match="backend"):
        generate(tmp_path / "x", 5, backend="spark", progress=False)
    with pytest.raises(DatasetError, match="no manifest"):
        list(iter_records(tmp_path))


def test_stats_describe_the_dataset(uninterrupted):
    stats = dataset_stats(uninterrupted)
    assert stats["programs"] == N
    assert sum(stats["split"].values()) == N
    assert sum(stats["length (SOps)"].values()) == N
    assert set(stats["length (SOps)"]) <= set(range(1, 11))
    assert sum(stats["layers"].values()) == N
    assert "selector_width" in stats["programs using op kind"]


def test_cli_generate_and_stats(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "data",
                "generate",
                "--n",
                "12",
                "--out",
                str(out),
                "--workers",
                "1",
                "--shard-size",
                "8",
                "--max-ops",
                "4",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["programs"] == 12 and summary["compile_failure_rate"] < 0.05
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sampler"]["max_ops"] == 4
    assert main(["data", "stats", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["programs"] == 12
    assert main(["data", "stats", str(tmp_path / "missing")]) == 2
    assert "not a raspsynth dataset" in capsys.readouterr().err
    assert SamplerConfig().max_ops == 10


def test_string_token_datasets_load_and_older_manifests_resume(tmp_path, capsys):
    out = tmp_path / "strings"
    args = ["data", "generate", "--n", "8", "--out", str(out), "--workers", "1", "--shard-size", "4"]
    assert main([*args, "--max-ops", "3", "--string-tokens", "1"]) == 0
    capsys.readouterr()
    examples = list(load_examples(out))
    assert len(examples) == 8
    for record, program, model in examples:
        assert all(isinstance(token, str) for token in record["vocab"])
        recompiled = compile_program(to_rasp(program), record["vocab"], record["max_seq_len"])
        for name, array in recompiled.arrays().items():
            np.testing.assert_array_equal(model.arrays()[name], array)
    # Another share of string tokens is another distribution: refused on resume.
    with pytest.raises(DatasetError, match="sampler"):
        generate(out, 12, seed=0, shard_size=4, sampler=SamplerConfig(max_ops=3), progress=False)
    # A manifest written before the field existed resumes: its default keeps the old distribution.
    older = tmp_path / "older"
    generate(older, 4, seed=0, shard_size=4, sampler=SamplerConfig(max_ops=3), progress=False)
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["sampler"]["p_string_tokens"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert (
        generate(older, 8, seed=0, shard_size=4, sampler=SamplerConfig(max_ops=3), progress=False)["programs"]
        == 8
    )
