"""Program space: the IR, the function library, canonical forms, source text
and the random program sampler. Nothing here imports tracr."""

from raspsynth.program.canonical import canonical_form, canonical_hash, value_sets
from raspsynth.program.functions import LIBRARY
from raspsynth.program.ir import COMPARISONS, OP_KINDS, Fn, Op, Program, ProgramError
from raspsynth.program.source import to_source

__all__ = [
    "COMPARISONS",
    "LIBRARY",
    "OP_KINDS",
    "Fn",
    "Op",
    "Program",
    "ProgramError",
    "canonical_form",
    "canonical_hash",
    "to_source",
    "value_sets",
]
