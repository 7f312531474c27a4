"""Fuzz: every corrupted model file is refused with ModelFormatError or loads
a model that runs; no load hangs or allocates more than the file declares."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raspsynth import load_model
from raspsynth.errors import ModelFormatError
from raspsynth.tracr_bridge.file_mutants import KINDS, write_mutant

# Below any load's legitimate needs for these small examples; far below the
# 64 MB bomb and the 4 TB a forged header declares.
ALLOCATION_LIMIT = 16 << 20


def load_outcome(path: Path) -> str:
    """'refused' or 'loaded' (and then the model runs with finite logits);
    anything else fails the test, as does a load over 10 s or 16 MB."""
    result: dict = {}

    def load() -> None:
        tracemalloc.start()
        try:
            model = load_model(path)
            logits = model.logits([[token] for token in model.spec.vocab])
            assert all(np.all(np.isfinite(row)) for row in logits), "a loaded model gives non-finite logits"
            model.run([[token] for token in model.spec.vocab], mark_undefined=True)
            result["outcome"] = "loaded"
        except ModelFormatError as err:
            assert str(path) in str(err), "the error names the file"
            result["outcome"] = "refused"
        except BaseException as err:  # reported by the assertion below
            result["outcome"] = f"{type(err).__name__}: {err}"
        finally:
            result["peak"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), f"loading {path.name} hangs"
    assert result["outcome"] in ("refused", "loaded"), result["outcome"]
    assert result["peak"] < ALLOCATION_LIMIT, f"loading allocated {result['peak']} bytes"
    return result["outcome"]


@pytest.fixture(scope="module")
def example(shared_examples) -> Path:
    return next(p for p in shared_examples if p.stem == "frac_prevs")


@pytest.mark.parametrize("kind", KINDS)
def test_every_class_of_damage_is_refused_or_loads(tmp_path, example, kind):
    outcomes = {
        load_outcome(write_mutant(kind, example, np.random.default_rng(seed), tmp_path / f"m{seed}.npz"))
        for seed in range(3)
    }
    if kind.startswith("valid"):
        assert outcomes == {"loaded"}
    elif kind not in ("byte flip", "deflated member flip", "array dtype"):
        # These three can leave a file that is still valid (a flipped weight
        # bit, a float16 array); every other class is always invalid.
        assert outcomes == {"refused"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_is_refused_or_loads(tmp_path, example, data):
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    path = tmp_path / f"mutant_{seed}.npz"
    if path.exists() or path.is_dir():
        return
    load_outcome(write_mutant(kind, example, np.random.default_rng(seed), path))


def test_a_valid_float64_file_loads_the_same_model(tmp_path, example):
    path = write_mutant("valid: float64 arrays", example, np.random.default_rng(0), tmp_path / "f64.npz")
    original, widened = load_model(example), load_model(path)
    seqs = [[token] * n for token in original.spec.vocab for n in (1, 3)]
    assert widened.run(seqs) == original.run(seqs)
