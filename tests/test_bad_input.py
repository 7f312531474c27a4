"""API misuse raises a named InputError; the CLI answers every bad input
with exit status 2 and one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tracr.compiler import lib

from raspsynth import compile_program, from_tracr, load_model, synthesize
from raspsynth.cli import main
from raspsynth.errors import InputError, ModelFileNotFound, ModelFormatError


@pytest.fixture(scope="module")
def hist(shared_examples):
    return next(p for p in shared_examples if p.stem == "hist")


def test_api_misuse_is_an_input_error(hist, tmp_path):
    model = load_model(hist)
    cases = [
        lambda: synthesize(model, budget_s=10**400),
        lambda: synthesize(model, budget_s=float("nan")),
        lambda: synthesize(model, seed=-1),
        lambda: model.run([[[1]]]),
        lambda: model.run([[1]], batch_size=-1),
        lambda: model.run(5),
        lambda: model.permuted(seed=-1),
        lambda: model.rotated(seed="x"),
        lambda: from_tracr(None),
        lambda: compile_program(lib.make_length(), {0, 1}, max_seq_len=10**4),
    ]
    for case in cases:
        with pytest.raises(InputError) as caught:
            case()
        assert str(caught.value)  # a sentence saying what was expected
    with pytest.raises(ModelFileNotFound):
        synthesize(str(tmp_path / "absent.npz"))
    with pytest.raises(FileNotFoundError):  # still one, for callers that catch it
        load_model(tmp_path / "absent.npz")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raspsynth.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_bad_inputs_exit_2_with_one_line(hist, tmp_path):
    binary = tmp_path / "config.bin"
    binary.write_bytes(bytes(range(256)))
    null_params = tmp_path / "null.json"
    null_params.write_text('{"format": "raspsynth-search-config/1", "params": null}')
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for args in (
        ["synthesize", str(hist), "--config", str(binary)],
        ["synthesize", str(hist), "--config", str(null_params)],
        ["info", str(tmp_path / "absent.npz")],
        ["info", str(tmp_path)],
        ["data", "generate", "--n", "4", "--out", str(tmp_path / "d1"), "--vocab-size", "5", "2"],
        ["data", "generate", "--n", "4", "--out", str(tmp_path / "d2"), "--max-ops", "0"],
        ["data", "generate", "--n", "4", "--out", str(a_file)],
    ):
        done = _cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    # A refused dataset leaves nothing behind, so the corrected rerun is not refused.
    assert not (tmp_path / "d1").exists() and not (tmp_path / "d2").exists()


def test_cli_closed_pipe_is_not_a_traceback(hist):
    pipe = subprocess.run(
        f"{sys.executable} -m raspsynth.cli info {hist} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in pipe.stderr and "BrokenPipe" not in pipe.stderr


def test_the_cli_reports_a_corrupted_file_in_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04" + bytes(100))
    assert main(["synthesize", str(broken), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(broken) in err
    with pytest.raises(ModelFormatError):
        load_model(broken)
