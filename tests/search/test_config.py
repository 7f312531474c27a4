"""SearchConfig: the config file synthesize() loads, and the ablation switches."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest

from raspsynth import synthesize
from raspsynth.errors import InputError
from raspsynth.program.ir import Program
from raspsynth.search.config import ConfigError, SearchConfig, load_config, read_config, save_config
from raspsynth.symbolic.decompile import decompile_structure
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs
from tests.helpers import unreadable

LIB = lib_programs()


def _lib_model(name: str, permutation: int = 1):
    entry = LIB[name]
    return compile_program(entry.build(), entry.vocab, entry.max_seq_len).permuted(permutation)


def test_a_saved_config_reads_back_equal(tmp_path):
    config = SearchConfig(beam=3, hole_threshold=0.25, strategy="neural-first", z3=False)
    save_config(config, tmp_path / "c.json", {"study": "s"})
    assert read_config(tmp_path / "c.json") == config
    assert json.loads((tmp_path / "c.json").read_text())["provenance"] == {"study": "s"}


@pytest.mark.parametrize(
    "document, message",
    [
        ({"format": "raspsynth-search-config/1", "params": {"bream": 3}}, "unknown search config keys"),
        (
            {"format": "raspsynth-search-config/1", "params": {"beam": 0}},
            "beam must be an integer of at least 1",
        ),
        ({"format": "raspsynth-search-config/1", "params": {"strategy": "x"}}, "strategy must be one of"),
        ({"format": "something-else", "params": {}}, "not a raspsynth-search-config/1 file"),
    ],
)
def test_bad_config_files_raise_a_named_error(tmp_path, document, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=message):
        read_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path / "missing.json")


def test_synthesize_loads_the_file_named_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    save_config(SearchConfig(max_edits=1, top_k=2), path)
    monkeypatch.setenv("RASPSYNTH_CONFIG", str(path))
    assert load_config() == SearchConfig(max_edits=1, top_k=2)
    result = synthesize(_lib_model("make_length"), mode="search", budget_s=30)
    assert result.verified
    assert result.report["config"] == {"from": str(path), "changed": {"max_edits": 1, "top_k": 2}}
    given = synthesize(_lib_model("make_length"), mode="search", budget_s=30, config=SearchConfig())
    assert given.report["config"] == {"from": "argument", "changed": {}}
    with pytest.raises(InputError, match="config must be a SearchConfig"):
        synthesize(_lib_model("make_length"), config={"beam": 2})


def test_without_the_symbolic_layer_the_program_is_found_by_enumeration():
    result = synthesize(
        _lib_model("make_length"), mode="search", budget_s=30, config=SearchConfig(symbolic=False)
    )
    assert result.verified
    assert (
        "symbolic layer is off" in result.report["reason"] and "decompile" not in result.report["timings_s"]
    )
    assert all(op["how"] == "enumerated from input/output behaviour" for op in result.report["ops"])


def test_without_relabelling_a_sorts_comparison_reads_as_a_table():
    """make_sort compares keys x + i/5 (not integers): the values the library
    and 0, 1, ... give make no tracr comparison until the keys are relabelled
    by rank. Without that step (no `solver_timeout_ms`, the ablation) the
    predicate is still read exactly, as a table over the arbitrary labels."""
    model = _lib_model("make_sort")
    relabelled = decompile_structure(model)
    assert "ranked" in relabelled.values.how.values()
    selects = [op for op in relabelled.program.ops if op.kind == "select"]
    assert [op.comparison for op in selects] == ["LT", "EQ"]  # hand-checked: smaller keys, then position
    without = decompile_structure(model, solver_timeout_ms=None)
    assert not {"ranked", "solver"} & set(without.values.how.values())
    assert without.program.ops[1].kind == "select" and without.program.ops[1].fn.name == "table"
    config = SearchConfig(z3=False, repair=False)
    assert synthesize(model, mode="search", budget_s=30, config=config).verified


def test_without_repair_a_wrong_reading_stays_wrong(monkeypatch):
    """A comparison broken in the reading (LT -> GT, hand-checked for
    make_sort_unique) is repaired by default and kept without repair."""
    real = decompile_structure

    def broken_reading(model, solver_timeout_ms=None, deadline=None):
        decompiled = real(model, solver_timeout_ms, deadline)
        ops = tuple(
            dataclasses.replace(op, comparison="GT") if op.name == "select_0_0" else op
            for op in decompiled.program.ops
        )
        return dataclasses.replace(decompiled, program=Program(ops, decompiled.program.output))

    # The package exports the function under the module's name, hence import_module.
    module = importlib.import_module("raspsynth.search.synthesize")
    monkeypatch.setattr(module, "decompile_structure", broken_reading)
    model = _lib_model("make_sort_unique")
    repaired = synthesize(model, mode="search", budget_s=60, config=SearchConfig())
    assert repaired.verified and any("comparison LT" in e for e in repaired.report["edits"])
    kept = synthesize(model, mode="search", budget_s=60, config=SearchConfig(repair=False))
    assert not kept.verified and kept.report["edits"] == [] and "repair" not in kept.report["timings_s"]


def test_strategy_neural_first_tries_the_sketches_before_enumeration():
    # The strategy orders the stages without the symbolic layer, where the
    # meta-model still reads the blocks and enumeration also runs.
    model = _lib_model("make_length")
    config = SearchConfig(symbolic=False, strategy="neural-first", first_share=0.3)
    result = synthesize(model, mode="hybrid", budget_s=20, config=config)
    assert result.verified
    stages = list(result.report["timings_s"])
    assert "neural" in stages and "enumerate" not in stages  # the sketches verified first
    default = synthesize(model, mode="hybrid", budget_s=20, config=SearchConfig(symbolic=False))
    assert default.verified and "neural" not in default.report["timings_s"]  # enumeration found it first


def test_hybrid_gives_enumeration_the_whole_budget_where_nothing_is_read():
    # The meta-model reads the symbolic layer's blocks: on weights with none
    # it has no input, so the strategy and first_share do not apply.
    entry = LIB["make_length"]
    model = unreadable(compile_program(entry.build(), entry.vocab, entry.max_seq_len), seed=1)
    config = SearchConfig(strategy="neural-first", first_share=0.3)
    result = synthesize(model, mode="hybrid", budget_s=20, config=config)
    assert result.verified and result.report["recognised"] is False
    assert "neural" not in result.report["timings_s"] and "enumerate" in result.report["timings_s"]
