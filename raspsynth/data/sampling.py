"""Sampled programs that tracr compiles faithfully.

In: a seeded generator and a `SamplerConfig`. Out: `CompiledSample`s (the
program, its compiled `Model`, its canonical hash) and `SamplingStats`
counting why candidates were dropped.

A candidate is dropped when tracr refuses it (a compile failure: the sampler's
failure rate) or when tracr compiles it to a model that disagrees with RASP
semantics on a random probe wherever those are defined (a miscompile: tracr
does this for some valid programs, for instance a numerical-to-categorical
Map feeding a Select). Training on such pairs would teach the meta-model
tracr's bugs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from raspsynth.errors import CompileError
from raspsynth.program.canonical import canonical_hash
from raspsynth.program.evaluate import evaluate
from raspsynth.program.sampler import SampledProgram, SamplerConfig, sample_program
from raspsynth.tracr_bridge import Model, compile_program, probe_inputs
from raspsynth.tracr_bridge.outputs import rows_equal
from raspsynth.tracr_bridge.rasp_conversion import to_rasp


@dataclasses.dataclass
class SamplingStats:
    sampled: int = 0
    duplicates: int = 0  # skipped before compiling: hash already seen
    compile_failures: int = 0
    miscompiles: int = 0

    @property
    def compile_failure_rate(self) -> float:
        return self.compile_failures / max(self.sampled, 1)

    def add(self, other: SamplingStats) -> None:
        self.sampled += other.sampled
        self.duplicates += other.duplicates
        self.compile_failures += other.compile_failures
        self.miscompiles += other.miscompiles


@dataclasses.dataclass(frozen=True, eq=False)
class CompiledSample:
    sample: SampledProgram
    model: Model
    hash: str


def compiled_matches_rasp(sample: SampledProgram, model: Model) -> bool:
    """Whether the model equals RASP evaluation, wherever that is defined, on
    the sampler's check inputs; on every input (up to `probe_inputs`' bound)
    when a Map reads a numerical SOp, which tracr discretises and gets wrong
    only near some inputs (`x != 1` over means close to 1)."""
    inputs, outputs = sample.check_inputs, sample.check_outputs
    if any(
        op.kind == "map" and sample.program.encoding(op.inputs[0]) == "numerical" for op in sample.program.ops
    ):
        inputs = probe_inputs(model)
        outputs = evaluate(sample.program, inputs)
    for got, want in zip(model.run(inputs), outputs):
        defined = [i for i, w in enumerate(want) if w is not None]
        if not rows_equal([got[i] for i in defined], [want[i] for i in defined], model.spec.numerical):
            return False
    return True


def sample_compiled(
    rng: np.random.Generator,
    config: SamplerConfig,
    stats: SamplingStats,
    seen: set[str] | frozenset[str] = frozenset(),
) -> CompiledSample:
    """Draw until a candidate is new (canonical hash not in `seen`), compiles,
    and matches its RASP semantics."""
    while True:
        sample = sample_program(rng, config)
        stats.sampled += 1
        program_hash = canonical_hash(sample.program, sample.vocab, sample.max_seq_len)
        if program_hash in seen:
            stats.duplicates += 1
            continue
        try:
            model = compile_program(to_rasp(sample.program), sample.vocab, sample.max_seq_len)
        except CompileError:
            stats.compile_failures += 1
            continue
        if not compiled_matches_rasp(sample, model):
            stats.miscompiles += 1
            continue
        return CompiledSample(sample, model, program_hash)
