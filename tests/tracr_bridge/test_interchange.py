"""raspsynth-model/1 files: the independent examples, round trips, corruptions."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from raspsynth.errors import ModelFormatError
from raspsynth.tracr_bridge import compile_program, load_model


def test_shared_examples_reproduce_reference_outputs(shared_examples):
    assert len(shared_examples) == 4
    for path in shared_examples:
        model = load_model(str(path))
        reference = json.loads(path.with_suffix(".json").read_text())
        assert model.spec.max_seq_len == reference["max_seq_len"]
        assert set(model.spec.vocab) == set(reference["vocab"])
        inputs = [ex["input"] for ex in reference["examples"]]
        expected = [ex["output"] for ex in reference["examples"]]
        got = model.run(inputs)
        if model.spec.numerical:  # the writer's float arithmetic differs in the last bits
            for g, e in zip(got, expected):
                np.testing.assert_allclose(g, e, atol=1e-5, rtol=0)
        else:
            assert got == expected, path.name


def test_save_load_round_trip_is_exact(tmp_path, lib_references):
    from raspsynth.tracr_bridge import from_tracr

    for ref in lib_references:
        model = from_tracr(ref.assembled)
        path = tmp_path / f"{ref.name}.npz"
        model.save(str(path))
        loaded = load_model(str(path))
        assert loaded.meta() == model.meta()
        for name, array in model.arrays().items():
            np.testing.assert_array_equal(loaded.arrays()[name], array)
        assert loaded.spec == model.spec


def test_save_writes_exactly_the_given_path(tmp_path):
    from tracr.rasp import rasp

    model = compile_program(rasp.Map(lambda x: x + 1, rasp.tokens), {0, 1}, 3)
    path = tmp_path / "model.bin"
    model.save(str(path))
    assert path.exists() and not (tmp_path / "model.bin.npz").exists()
    assert load_model(str(path)).run([[0, 1]]) == [[1, 2]]


# -- corruptions: each must raise ModelFormatError naming the problem -------


def _arrays(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _write(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _with_meta(arrays, **changes):
    meta = json.loads(arrays["meta"].item())
    meta.update(changes)
    return {**arrays, "meta": np.array(json.dumps(meta))}


def _drop(name):
    return lambda a: {k: v for k, v in a.items() if k != name}


def _set(name, value):
    return lambda a: {**a, name: value(a[name])}


def _poison(value):
    def change(array):
        array = array.copy()
        array.flat[0] = value
        return array

    return change


CORRUPTIONS = [
    (
        "missing array",
        _drop("transformer/layer_1/mlp/linear_2/w"),
        "missing array 'transformer/layer_1/mlp/linear_2/w'",
    ),
    ("missing unembed", _drop("unembed"), "missing array 'unembed'"),
    ("missing meta", _drop("meta"), "no 'meta'"),
    ("wrong shape", _set("transformer/layer_0/attn/query/w", lambda w: w[:, :-1]), "shape"),
    ("wrong vocab rows", _set("token_embed/embeddings", lambda w: w[:-1]), "token_embed/embeddings.*shape"),
    ("wrong rank", _set("unembed", lambda w: w[:, 0]), "unembed.*dimensions"),
    ("NaN", _set("transformer/layer_0/mlp/linear_1/w", _poison(np.nan)), "NaN or inf"),
    ("inf", _set("pos_embed/embeddings", _poison(np.inf)), "NaN or inf"),
    ("string array", _set("unembed", lambda w: np.array([["a"]])), "non-numeric"),
    (
        "unknown version",
        lambda a: _with_meta(a, format="raspsynth-model/2"),
        "unknown format 'raspsynth-model/2'",
    ),
    ("bad JSON", lambda a: {**a, "meta": np.array("{not json")}, "not valid JSON"),
    ("meta not a string", lambda a: {**a, "meta": np.zeros(3)}, "0-d string"),
    ("meta not an object", lambda a: {**a, "meta": np.array("[1, 2]")}, "must be an object"),
    (
        "missing meta field",
        lambda a: {
            **a,
            "meta": np.array(
                json.dumps({k: v for k, v in json.loads(a["meta"].item()).items() if k != "key_size"})
            ),
        },
        "lacks the field 'key_size'",
    ),
    ("negative size", lambda a: _with_meta(a, num_layers=-1), "non-negative integer"),
    ("bos not in vocab", lambda a: _with_meta(a, bos="<s>"), "bos"),
    ("duplicate vocab", lambda a: _with_meta(a, input_vocab=[0, 0, 2, "BOS", "compiler_pad"]), "repeated"),
    ("bad output kind", lambda a: _with_meta(a, output={"kind": "ordinal"}), "output.kind"),
    ("fewer layers than arrays", lambda a: _with_meta(a, num_layers=1), "unexpected arrays"),
    ("more layers than arrays", lambda a: _with_meta(a, num_layers=3), "missing array 'transformer/layer_2"),
]


@pytest.mark.parametrize("name,corrupt,message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupted_files_raise_model_format_error(tmp_path, shared_examples, name, corrupt, message):
    source = next(p for p in shared_examples if p.stem == "frac_prevs")
    path = tmp_path / "corrupt.npz"
    _write(path, corrupt(_arrays(source)))
    with pytest.raises(ModelFormatError, match=message):
        load_model(str(path))


def test_files_that_are_not_npz_raise_model_format_error(tmp_path):
    text = tmp_path / "model.npz"
    text.write_text("hello, I am not a model")
    with pytest.raises(ModelFormatError, match="not a readable .npz"):
        load_model(str(text))

    npy = tmp_path / "array.npz"
    with open(npy, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ModelFormatError, match="not an .npz archive"):
        load_model(str(npy))

    truncated = tmp_path / "truncated.npz"
    buffer = io.BytesIO()
    np.savez(buffer, a=np.zeros(100))
    truncated.write_bytes(buffer.getvalue()[:60])
    with pytest.raises(ModelFormatError):
        load_model(str(truncated))

    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as zf, zf.open("meta.npy", "w") as f:
        np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelFormatError, match="unreadable"):
        load_model(str(pickled))


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path / "absent.npz"))
