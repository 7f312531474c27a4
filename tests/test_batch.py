"""`raspsynth synthesize-many`: a row per model, failures as rows, resumable
after a kill, and a summary."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from raspsynth.batch import read_rows, summary_table, synthesize_many
from raspsynth.cli import main
from raspsynth.errors import InputError
from tests.conftest import REPO
from tests.helpers import crashing_worker


@pytest.fixture()
def zoo(tmp_path, shared_examples):
    """The four shared examples plus a corrupt file."""
    for path in shared_examples:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    return sorted(str(p) for p in tmp_path.glob("*.npz"))


def test_every_model_gets_a_row_and_a_bad_file_is_one_of_them(zoo, tmp_path):
    out = tmp_path / "results.jsonl"
    rows = synthesize_many(zoo, out, jobs=2, budget_s=30, progress=False)
    assert [r["model"] for r in rows] == zoo
    by_name = {r["model"].rsplit("/", 1)[1]: r for r in rows}
    assert by_name["corrupt.npz"]["status"] == "error"
    assert "ModelFormatError" in by_name["corrupt.npz"]["error"]
    for name in ("hist.npz", "sort_unique.npz", "length.npz", "frac_prevs.npz"):
        assert by_name[name]["verified"] and by_name[name]["certificate"] == "exhaustive", name
        assert by_name[name]["source"].startswith("from tracr.rasp import rasp")
    assert sorted(read_rows(out), key=lambda r: r["model"]) == rows
    table = summary_table(rows)
    assert "4/5 verified (1 error)" in table


def test_a_crash_or_a_hang_is_a_row_and_the_run_goes_on(zoo, tmp_path):
    crash, hang = tmp_path / "crash.npz", tmp_path / "hang.npz"
    shutil.copy(zoo[0], crash)
    shutil.copy(zoo[0], hang)
    hist = next(m for m in zoo if m.endswith("hist.npz"))
    models = [str(crash), str(hang), hist]
    rows = synthesize_many(
        models, tmp_path / "r.jsonl", jobs=2, budget_s=5, grace_s=3, progress=False, worker=crashing_worker
    )
    statuses = {r["model"]: r["status"] for r in rows}
    assert statuses == {str(crash): "crashed", str(hang): "timeout", hist: "verified"}


def test_a_killed_run_resumes_without_partial_or_repeated_rows(zoo, tmp_path):
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "raspsynth.cli", "synthesize-many", *zoo, "--out", str(out), "--quiet"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and out.read_bytes().count(b"\n") >= 1):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = read_rows(out)
    assert 1 <= len(first) < len(zoo)
    # A kill inside a write would leave a torn last line: it is dropped on resume.
    with open(out, "ab") as f:
        f.write(b'{"model": "torn')
    assert main(["synthesize-many", *zoo, "--out", str(out), "--quiet", "--budget", "30"]) == 1  # corrupt.npz
    rows = read_rows(out)
    assert sorted(r["model"] for r in rows) == zoo
    assert rows[: len(first)] == first  # rows already written were kept, not redone
    assert out.read_bytes().endswith(b"\n")
    assert all(json.loads(line) for line in out.read_text().splitlines())


def test_bad_arguments_are_named_errors(tmp_path, zoo):
    from raspsynth.errors import InputError

    with pytest.raises(InputError, match="jobs"):
        synthesize_many(zoo, tmp_path / "r.jsonl", jobs=0)
    with pytest.raises(InputError, match="backend"):
        synthesize_many(zoo, tmp_path / "r.jsonl", backend="dask")
    with pytest.raises(InputError, match="directory"):
        synthesize_many(zoo, tmp_path, progress=False)
    (tmp_path / "other.jsonl").write_text("not json\n")
    assert main(["synthesize-many", zoo[0], "--out", str(tmp_path / "other.jsonl")]) == 2


def test_the_config_and_meta_model_reach_every_worker(zoo, tmp_path):
    # `--meta-model` on synthesize-many as on synthesize: a checkpoint that is
    # not there is each model's error, named; a committed one is used.
    hist = next(m for m in zoo if m.endswith("hist.npz"))
    missing = tmp_path / "nowhere.pt"
    out = tmp_path / "missing.jsonl"
    args = ["synthesize-many", hist, "--out", str(out), "--budget", "20", "--quiet"]
    assert main([*args, "--meta-model", str(missing)]) == 1
    (row,) = read_rows(out)
    assert row["status"] == "error" and "nowhere.pt" in row["error"]
    out = tmp_path / "gpu.jsonl"
    args[3] = str(out)
    assert main([*args, "--meta-model", "gpu", "--mode", "neural"]) == 0
    (row,) = read_rows(out)
    assert row["verified"], row
    with pytest.raises(InputError, match="SearchConfig"):
        synthesize_many([hist], tmp_path / "x.jsonl", config={"meta_model": "gpu"}, progress=False)
