"""`raspsynth` commands: demo, info, run, and clear errors for bad input."""

from __future__ import annotations

import json

from raspsynth.cli import main
from tests.conftest import REPO


def test_demo_runs_the_bundled_examples(capsys):
    assert main(["demo", "--dir", str(REPO / "examples")]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("== ") for line in out.splitlines()) == 4
    assert "matches reference" in out and "DIFFERS" not in out


def test_info_and_run(capsys, shared_examples):
    hist = next(p for p in shared_examples if p.stem == "hist")
    assert main(["info", str(hist)]) == 0
    info = json.loads(capsys.readouterr().out.split("\nd_model")[0])
    assert info["format"] == "raspsynth-model/1"
    assert main(["run", str(hist), "1 1 2", "4"]) == 0
    assert capsys.readouterr().out.splitlines() == ["[1, 1, 2] -> [2, 2, 1]", "[4] -> [1]"]


def test_bad_inputs_give_clear_errors(capsys, tmp_path, shared_examples):
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("not a model")
    assert main(["info", str(bogus)]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "absent.npz")]) == 2
    assert "No such file" in capsys.readouterr().err
    hist = next(p for p in shared_examples if p.stem == "hist")
    assert main(["run", str(hist), "1 9"]) == 2
    assert "not in the model's vocabulary" in capsys.readouterr().err
