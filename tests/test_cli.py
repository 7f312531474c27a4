"""`raspsynth` commands: demo, synthesize, info, run, and clear errors for bad input."""

from __future__ import annotations

import importlib
import json

from raspsynth.cli import main
from tests.conftest import REPO


def test_demo_synthesizes_the_bundled_examples(capsys):
    assert main(["demo", "--dir", str(REPO / "examples")]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("== ") for line in out.splitlines()) == 4
    assert out.count("model reproduces the 30 reference outputs: yes") == 4
    assert out.count("\nverified (exhaustive); passed on") == 4
    assert "rasp.SelectorWidth(select_0_0)" in out  # hist and length


def test_synthesize_prints_source_and_report_or_json(capsys, shared_examples):
    sort_unique = next(p for p in shared_examples if p.stem == "sort_unique")
    assert main(["synthesize", str(sort_unique), "--budget", "30"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("from tracr.rasp import rasp")
    assert "verified (exhaustive); passed on 3905 probe inputs" in out
    assert "symbolic confidence 1.00" in out
    assert main(["synthesize", str(sort_unique), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["verified"] is True and payload["agreement"] == 1.0
    assert [op["kind"] for op in payload["report"]["ops"]] == [
        "select",
        "selector_width",
        "select",
        "aggregate",
    ]


def test_info_and_run(capsys, shared_examples):
    hist = next(p for p in shared_examples if p.stem == "hist")
    assert main(["info", str(hist)]) == 0
    info = json.loads(capsys.readouterr().out.split("\nd_model")[0])
    assert info["format"] == "raspsynth-model/1"
    assert main(["run", str(hist), "1 1 2", "4"]) == 0
    assert capsys.readouterr().out.splitlines() == ["[1, 1, 2] -> [2, 2, 1]", "[4] -> [1]"]


def test_bad_inputs_give_clear_errors(capsys, tmp_path, shared_examples, monkeypatch):
    bogus = tmp_path / "bogus.npz"
    bogus.write_text("not a model")
    assert main(["info", str(bogus)]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "absent.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
    hist = next(p for p in shared_examples if p.stem == "hist")
    assert main(["run", str(hist), "1 9"]) == 2
    assert "not in the model's vocabulary" in capsys.readouterr().err
    assert main(["synthesize", str(bogus)]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
    assert main(["synthesize", str(hist), "--budget", "-1"]) == 2
    assert "budget_s must be a positive number" in capsys.readouterr().err
    pipeline = importlib.import_module("raspsynth.search.synthesize")  # the module, not the function
    monkeypatch.setattr(pipeline, "default_checkpoint", lambda: tmp_path / "none.pt")
    assert main(["synthesize", str(hist), "--mode", "neural"]) == 2
    assert "no meta-model checkpoint" in capsys.readouterr().err


def test_synthesize_takes_a_config_file(capsys, tmp_path, shared_examples):
    from raspsynth.search.config import SearchConfig, save_config

    hist = next(p for p in shared_examples if p.stem == "hist")
    config = tmp_path / "config.json"
    save_config(SearchConfig(symbolic=False), config)
    assert main(["synthesize", str(hist), "--mode", "search", "--json", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert report["config"] == {"from": "argument", "changed": {"symbolic": False}}
    assert "enumerate" in report["timings_s"] and "decompile" not in report["timings_s"]
    config.write_text("{}")
    assert main(["synthesize", str(hist), "--config", str(config)]) == 2
    assert "not a raspsynth-search-config/1 file" in capsys.readouterr().err


def test_synthesize_shows_its_stages_on_stderr_unless_quiet(capsys, shared_examples):
    hist = next(p for p in shared_examples if p.stem == "hist")
    assert main(["synthesize", str(hist), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["certificate"] == "exhaustive"  # stdout stays clean JSON
    stages = [line.split("] ", 1)[1] for line in captured.err.splitlines()]
    assert stages[0].startswith("load ") and stages[-1] == "done: verified (exhaustive)"
    assert {"probes", "decompile", "verify"} <= set(stages)
    assert main(["synthesize", str(hist), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_report_writes_an_html_page(capsys, tmp_path, shared_examples):
    hist = next(p for p in shared_examples if p.stem == "hist")
    out = tmp_path / "hist.html"
    assert main(["report", str(hist), "-o", str(out), "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    assert page.count('class="op"') == 2 and "selector_width" in page


def test_synthesize_reads_a_transformer_lens_checkpoint(capsys, tmp_path, shared_examples):
    import raspsynth
    from raspsynth.tracr_bridge.transformer_lens import save_transformer_lens

    model = raspsynth.load_model(str(next(p for p in shared_examples if p.stem == "length")))
    save_transformer_lens(model.permuted(seed=4), tmp_path / "length.pth")
    spec = tmp_path / "length.json"
    moved = tmp_path / "vocab.json"
    spec.rename(moved)
    assert main(["synthesize", str(tmp_path / "length.pth"), "--quiet"]) == 2
    assert "needs its vocabularies" in capsys.readouterr().err
    assert main(["synthesize", str(tmp_path / "length.pth"), "--spec", str(moved), "--quiet"]) == 0
    assert "verified (exhaustive)" in capsys.readouterr().out


def test_synthesize_takes_the_meta_model_by_name(capsys, shared_examples):
    hist = next(p for p in shared_examples if p.stem == "hist")
    assert main(["synthesize", str(hist), "--mode", "neural", "--meta-model", "gpu", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["verified"] is True
    assert payload["report"]["meta_model"] == "loaded meta_model_gpu.pt"
    assert payload["report"]["config"]["changed"]["meta_model"] == "gpu"  # the rest: the tuned config
    assert main(["synthesize", str(hist), "--meta-model", "big"]) == 2
    assert "meta_model must be one of cpu, gpu or a .pt file" in capsys.readouterr().err
