"""tracr's `lib` programs with the vocabularies they are usually compiled with.

One catalogue shared by tests, benchmarks and evaluations, so that "tracr's
lib programs" means the same set everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class LibProgram:
    name: str
    build: Callable[[], object]  # returns a fresh tracr rasp.SOp
    vocab: frozenset
    max_seq_len: int


def _catalogue() -> dict[str, LibProgram]:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    def frac_prevs() -> object:
        return lib.make_frac_prevs(rasp.numerical(rasp.Map(lambda x: x == "x", rasp.tokens)))

    entries = [
        LibProgram("make_length", lib.make_length, frozenset(range(5)), 5),
        LibProgram("make_hist", lib.make_hist, frozenset(range(5)), 5),
        LibProgram(
            "make_sort_unique",
            lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
            frozenset(range(5)),
            5,
        ),
        LibProgram(
            "make_sort",
            lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1),
            frozenset(range(1, 5)),
            5,
        ),
        LibProgram("make_sort_freq", lambda: lib.make_sort_freq(max_seq_len=5), frozenset(range(1, 5)), 5),
        LibProgram("make_frac_prevs", frac_prevs, frozenset({"x", "y", "z"}), 5),
        LibProgram(
            "make_pair_balance",
            lambda: lib.make_pair_balance(rasp.tokens, "(", ")"),
            frozenset({"(", ")", "a"}),
            5,
        ),
        LibProgram(
            "make_shuffle_dyck",
            lambda: lib.make_shuffle_dyck(pairs=["()", "{}"]),
            frozenset({"(", ")", "{", "}"}),
            5,
        ),
    ]
    return {entry.name: entry for entry in entries}


def lib_programs() -> dict[str, LibProgram]:
    """Name -> LibProgram for tracr's lib programs (make_length, make_hist, ...)."""
    return _catalogue()
