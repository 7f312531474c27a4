"""Shared fixtures: the independent examples in ../shared and reference
compilations by tracr's stock compiler (slow, so built once per session)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp
from tests.helpers import random_programs

REPO = Path(__file__).resolve().parent.parent
N_RANDOM_REFERENCE = 50


def shared_dir() -> Path:
    return Path(os.environ.get("RASPSYNTH_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_examples() -> list[Path]:
    files = sorted((shared_dir() / "examples").glob("*.npz"))
    if not files:
        pytest.fail(f"no example models under {shared_dir() / 'examples'}; set RASPSYNTH_SHARED")
    return files


@dataclasses.dataclass
class Reference:
    """A program, its spec, and tracr's stock compilation of it."""

    name: str
    program: object  # tracr rasp.SOp (one object, so labels match in both compilers)
    vocab: frozenset
    max_seq_len: int
    assembled: object  # tracr AssembledTransformerModel


def _stock(program, vocab, max_seq_len, causal=False):
    from tracr.compiler import compiling

    return compiling.compile_rasp_to_model(program, vocab, max_seq_len, causal=causal, compiler_bos="BOS")


@pytest.fixture(scope="session")
def lib_references() -> list[Reference]:
    refs = []
    for name, entry in lib_programs().items():
        program = entry.build()
        refs.append(
            Reference(
                name, program, entry.vocab, entry.max_seq_len, _stock(program, entry.vocab, entry.max_seq_len)
            )
        )
    return refs


@pytest.fixture(scope="session")
def random_references() -> list[Reference]:
    refs = []
    for i, sample in enumerate(random_programs(N_RANDOM_REFERENCE, seed=1234)):
        program = to_rasp(sample.program)
        refs.append(
            Reference(
                f"random_{i}",
                program,
                sample.vocab,
                sample.max_seq_len,
                _stock(program, sample.vocab, sample.max_seq_len),
            )
        )
    return refs
