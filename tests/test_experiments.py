"""Every experiment script runs end to end with --quick (slow: about 7 minutes)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from raspsynth.search.config import read_config

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXPERIMENTS / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_compare_quick_writes_every_table_and_plot(tmp_path):
    stdout = _run("compare.py", "--out", str(tmp_path), "--tuned", str(tmp_path / "none.json"))
    rows = list(csv.DictReader((tmp_path / "compare.csv").open()))
    variants = {r["variant"] for r in rows}
    assert variants == {
        "neural",
        "search",
        "hybrid",
        "hybrid -symbolic",
        "hybrid -z3",
        "hybrid -repair",
        "hybrid -ranking",
    }
    assert {r["set"] for r in rows} == {"test", "shifted", "lambdas", "lib", "rotated"}
    assert len(rows) == 7 * (6 + 3 + 3 + 4 + 3)
    # The symbolic reading verifies every readable lib program it is given.
    assert all(r["verified"] == "True" for r in rows if r["set"] == "lib" and r["variant"] == "hybrid")
    assert "| set | variant |" in stdout and (tmp_path / "compare.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "compare.json").read_text())["summary"]
    assert summary["lib"]["hybrid"]["verified_rate"] == 1.0


@pytest.mark.slow
def test_tune_quick_writes_a_config_that_synthesize_can_load(tmp_path):
    out = tmp_path / "tuned.json"
    _run(
        "tune.py",
        "--storage",
        f"sqlite:///{tmp_path / 'study.db'}",
        "--out",
        str(out),
        "--results",
        str(tmp_path),
    )
    config = read_config(out)
    report = json.loads((tmp_path / "tune.json").read_text())
    assert len(report["trials"]) == 4 and report["best"]["default_trial"] == 0
    best = max((t for t in report["trials"] if t["state"] == "COMPLETE"), key=lambda t: t["value"])
    assert report["best"]["best_trial"] == best["number"]
    assert {k: getattr(config, k) for k in best["params"]} == best["params"]


@pytest.mark.slow
def test_eval_scripts_quick_need_no_dataset(tmp_path):
    _run("eval_neural.py", "--out", str(tmp_path))
    neural = json.loads((tmp_path / "eval_neural.json").read_text())
    assert neural["overall"]["programs"] == 20 and (tmp_path / "eval_neural.png").exists()
    _run("eval_synthesis.py", "--out", str(tmp_path))
    synthesis = json.loads((tmp_path / "eval_synthesis.json").read_text())
    assert synthesis["summary"]["test"]["programs"] == 10
    assert synthesis["summary"]["lib"]["verified_rate"] == 1.0


@pytest.mark.slow
def test_benchmarks_quick_run_and_report(tmp_path):
    _run("bench_data.py", "--out", str(tmp_path))
    data = json.loads((tmp_path / "bench_data.json").read_text())
    assert data["programs"] == 200 and data["compile_failure_rate"] < 0.05
    _run("bench_symbolic.py", "--out", str(tmp_path))
    symbolic = json.loads((tmp_path / "bench_symbolic.json").read_text())
    assert symbolic["exact_expression_or_table"] == 1.0
    _run("bench_bridge.py", "--out", str(tmp_path))
    bridge = json.loads((tmp_path / "bench_bridge.json").read_text())
    # The script itself checks that our arrays and outputs equal stock tracr's
    # (it exits non-zero otherwise); speed is its figure, not this test's.
    assert bridge["programs"] == 5 and "compile_ratio" in bridge and "forward_ratio" in bridge
