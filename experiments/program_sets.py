"""The program sets experiments evaluate on, each a list of `Case`s.

Sampled programs come from the training-data pipeline's own sampler
(`sample_compiled`: compile check, deduplication by canonical hash) and are
kept only when their canonical hash falls in the requested split
(`split_of`). The test split is for reported figures, the val split for
tuning, so no tuned or trained choice ever sees a test program, nor any
renaming or table-equal variant of one.

- default: the default distribution (1..10 SOps, vocab {0..4}, max_seq_len 5);
- shifted: vocab of 6..10 tokens, max_seq_len 6..10, 6..14 SOps (the
  meta-model never saw such programs; its grammar takes up to 16 ops);
- lambdas: default-distribution programs whose Maps on tokens compute
  human-style lambdas the function library does not hold, such as
  `(2 * x + 1) % 5` or `x * x % 4` (what people write by hand);
- lib: tracr's 8 lib programs with their usual vocabularies;
- devsets: the models in ../shared/devsets/ (InterpBench's human-written
  programs, another team's sampler), which no one here wrote: measured
  only, never trained, tuned or selected on.

Each model is transformed before synthesis sees it: `plain` (as compiled),
`permuted` (the residual shuffled, the normal case), `rotated` (a random
orthogonal rotation: the weights can no longer be read block by block
until the basis is recovered), `mixed` (a random invertible, non-orthogonal
map), `lossless` (projected onto the span of the states it visits, then
rotated: fewer dimensions than tracr's) or `learned` (tracr's
CompressedTransformer form at the visited-state rank, trained until its
outputs equal the original's; see `tracr_bridge.learned_compression`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from raspsynth.data.generate import split_of
from raspsynth.data.sampling import SamplingStats, sample_compiled
from raspsynth.errors import CompileError, CompressionFailed
from raspsynth.program.canonical import canonical_hash
from raspsynth.program.ir import Fn, Program, ProgramError
from raspsynth.program.sampler import SamplerConfig, sample_program
from raspsynth.tracr_bridge import compile_program, load_model
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.model import Model
from raspsynth.tracr_bridge.rasp_conversion import from_rasp, to_rasp

DEFAULT = SamplerConfig()
SHIFTED = SamplerConfig(min_ops=6, max_ops=14, vocab_size=(6, 10), max_seq_len=(6, 10))
TRANSFORM_SEED = 11
DEVSETS = Path(__file__).resolve().parent.parent.parent / "shared" / "devsets"
# The devsets' metadata names op kinds as tracr's classes do.
_TRACR_KINDS = {
    "Map": "map",
    "SequenceMap": "sequence_map",
    "LinearSequenceMap": "linear_sequence_map",
    "Aggregate": "aggregate",
    "SelectorWidth": "selector_width",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Case:
    set: str
    name: str
    n_sops: int
    kinds: tuple[str, ...]  # the op kinds the program uses
    model: Model
    program: Program | None = None  # the program compiled (for exact-match metrics)


def op_kinds(program: Program) -> tuple[str, ...]:
    return tuple(sorted({op.kind for op in program.ops if op.kind != "select"}))


def _transformed(model: Model, transform: str) -> Model:
    return model.in_residual(transform, TRANSFORM_SEED)


def sampled_cases(
    set_name: str,
    n: int,
    seed: int,
    split: str,
    sampler: SamplerConfig = DEFAULT,
    transform: str = "permuted",
    dropped: list[str] | None = None,
) -> list[Case]:
    """n programs of `sampler`'s distribution whose canonical hash is in
    `split`. A program whose learned compression does not reach exact
    agreement is skipped, its hash appended to `dropped` when given."""
    rng = np.random.default_rng(seed)
    stats, seen, out = SamplingStats(), set(), []
    while len(out) < n:
        compiled = sample_compiled(rng, sampler, stats, seen)
        seen.add(compiled.hash)
        if split_of(compiled.hash) == split:
            program = compiled.sample.program
            try:
                model = _transformed(compiled.model, transform)
            except CompressionFailed:
                if dropped is not None:
                    dropped.append(compiled.hash)
                continue
            name = f"{set_name}-{len(out)}-{compiled.hash[:8]}"
            out.append(Case(set_name, name, program.num_sops, op_kinds(program), model, program))
    return out


# Lambdas people write that the library does not name: (template, parameter choices).
HUMAN_LAMBDAS = (
    ("lambda x: ({a} * x + {b}) % {m}", {"a": (2, 3), "b": (1, 2, 3), "m": (3, 4, 5)}),
    ("lambda x: x * x % {m}", {"m": (3, 4, 5, 6)}),
    ("lambda x: abs(x - {c}) + {d}", {"c": (1, 2, 3), "d": (1, 2)}),
    ("lambda x: min(x, {c}) * {k}", {"c": (1, 2, 3), "k": (2, 3)}),
)


def _human_lambda(rng: np.random.Generator) -> str:
    template, choices = HUMAN_LAMBDAS[int(rng.integers(len(HUMAN_LAMBDAS)))]
    return template.format(**{k: v[int(rng.integers(len(v)))] for k, v in choices.items()})


def lambda_cases(n: int, seed: int, split: str, transform: str = "permuted") -> list[Case]:
    """n default-distribution programs whose categorical Maps on tokens are
    given human-style lambdas (as exact tables over the vocabulary), kept
    when the result compiles and its canonical hash is in `split`."""
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    while len(out) < n:
        sample = sample_program(rng, DEFAULT)
        ops, changed = [], 0
        for op in sample.program.ops:
            if op.kind == "map" and op.inputs == ("tokens",) and op.encoding == "categorical":
                f = eval(_human_lambda(rng))  # our own template text
                op = dataclasses.replace(op, fn=Fn.from_table({v: f(v) for v in sample.vocab}, 1))
                changed += 1
            ops.append(op)
        if not changed:
            continue
        try:
            program = Program(tuple(ops), sample.program.output)
            program_hash = canonical_hash(program, sample.vocab, sample.max_seq_len)
            if program_hash in seen or split_of(program_hash) != split:
                continue
            model = compile_program(to_rasp(program), sample.vocab, sample.max_seq_len)
        except (ProgramError, CompileError):
            continue
        seen.add(program_hash)
        name = f"lambdas-{len(out)}-{program_hash[:8]}"
        model = _transformed(model, transform)
        out.append(Case("lambdas", name, program.num_sops, op_kinds(program), model, program))
    return out


def lib_cases(transform: str = "permuted", limit: int | None = None) -> list[Case]:
    out = []
    for name, entry in list(lib_programs().items())[:limit]:
        program = from_rasp(entry.build(), entry.vocab, entry.max_seq_len)
        model = compile_program(entry.build(), entry.vocab, entry.max_seq_len)
        out.append(Case("lib", name, program.num_sops, op_kinds(program), _transformed(model, transform)))
    return out


def devset_cases(set_name: str, transform: str = "rotated", folder: Path = DEVSETS) -> list[Case]:
    """Every model of the dev sets under `folder` (interpbench, peer), in the
    residual `transform` gives it; program length and op kinds from each
    model's metadata file. No program: these are measured, never read back."""
    out = []
    for path in sorted(folder.glob("*/*.npz")):
        meta = json.loads(path.with_suffix(".json").read_text())
        kinds = sorted({_TRACR_KINDS[op["kind"]] for op in meta["ops"] if op["kind"] in _TRACR_KINDS})
        model = _transformed(load_model(path), transform)
        out.append(Case(set_name, f"{path.parent.name}/{path.stem}", meta["n_sops"], tuple(kinds), model))
    return out
