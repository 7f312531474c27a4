"""`synthesize()`: weights in, a verified RASP program out.

In: a `Model` (or a raspsynth-model/1 file), a mode, a time budget and a
seed. Out: `SynthesisResult`: the program as a tracr SOp and as Python
source, `verified`, `agreement` and a report saying where every op came from.

The pipeline, stage by stage:
1. candidates: the program the symbolic layer reads off the weights
   (`decompile_structure`), with a confidence per op; in hybrid mode the
   meta-model's sketches when that reading is missing or fails (in neural
   mode, its best sketch alone);
2. verification of the candidate on every probe input (`verify`);
3. repair when it fails: best-first local edits from the first op whose
   intermediate values differ from the model's (`repair`);
4. enumeration when the weights cannot be read at all (a rotated residual,
   or no tracr layout): small programs from input/output behaviour alone;
   in hybrid mode, enumeration and the meta-model's sketches share what is
   left of the budget, in the order `SearchConfig.strategy` says;
5. readable lambdas: each function the library does not name is printed as
   the smallest expression the MIPS-style search finds for its table.
Every stage checks the deadline; the result is always the best program found
so far, `verified` True only when the full check ran and passed. The knobs
and the ablation switches come from a `SearchConfig` (by default the tuned
config file, see `config.load_config`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from raspsynth.errors import InputError, MetaModelUnavailable, checked_budget, checked_seed
from raspsynth.neural import DEFAULT_META_MODEL, checkpoint_path, default_checkpoint
from raspsynth.program.ir import PREDICATE_ARGUMENTS, Program
from raspsynth.program.source import to_source
from raspsynth.search.config import ConfigError, SearchConfig, config_source, read_config
from raspsynth.search.enumerate import enumerate_programs
from raspsynth.search.repair import repair
from raspsynth.search.verify import Verification, verify
from raspsynth.symbolic.decompile import decompile_structure
from raspsynth.symbolic.expression_search import find_expression
from raspsynth.tracr_bridge.interchange import load_model
from raspsynth.tracr_bridge.isomorphism import weights_isomorphic
from raspsynth.tracr_bridge.model import Model, one_blas_thread
from raspsynth.tracr_bridge.probes import count_inputs, probe_inputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp

MODES = ("neural", "search", "hybrid")
DEFAULT_BUDGET_S = 60.0
EXPRESSION_BUDGET_S = 1.0  # per table function, at most
# The isomorphism check may run this far past the deadline (within the
# promised max(1 s, 10%) overrun): it is what certifies a verification that
# the budget cut short.
ISOMORPHISM_GRACE_S = 0.5


@dataclasses.dataclass(frozen=True)
class _Attempt:
    """One candidate as a stage left it: the program, its verification (None
    when not run), per op (origin, confidence, how), the ops repair changed,
    and a status line when there is no verification to report."""

    program: Program | None = None
    verification: Verification | None = None
    origin: dict[str, tuple[str, float, str]] = dataclasses.field(default_factory=dict)
    edited: frozenset[str] = frozenset()
    status: str | None = "not run: the budget was spent"

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.verified

    def rank(self) -> tuple:
        """Attempts compare by verified, then agreement, then having a program at all."""
        agreement = self.verification.agreement if self.verification else -1.0
        return (self.verified, agreement, self.program is not None)


def _repaired(original: Program, outcome, origin: dict) -> _Attempt:
    """The attempt a successful repair of `original` gives."""
    edited = frozenset(op.name for op in outcome.program.ops if op not in original.ops)
    return _Attempt(outcome.program, outcome.verification, origin, edited, None)


@dataclasses.dataclass(frozen=True)
class SynthesisResult:
    program: Any  # tracr rasp.SOp, or None when nothing was found
    source: str  # Python text; exec() binds `program`; "" when nothing was found
    verified: bool
    agreement: float
    report: dict[str, Any]
    ir: Program | None = None
    # "exhaustive" (every input run), "isomorphic" (recompiled weights equal
    # the model's up to its symmetries: every input), "sampled" (the probe
    # set only), "none" (not verified); see `_Run._certificate`.
    certificate: str = "none"

    def to_html(self) -> str:
        """One self-contained HTML page: the source, the dataflow graph laid
        out by layer, per op its table or predicate heatmap, and the
        verification (see `raspsynth.report`)."""
        from raspsynth.report import render_html

        return render_html(self)

    def summary(self) -> str:
        """A few lines for people: verdict, timings, and per op its origin."""
        report = self.report
        status = (
            f"verified ({self.certificate})"
            if self.verified
            else f"NOT verified (agreement {self.agreement:.4f})"
        )
        lines = [
            f"{status}; {report['verification']}; {report['elapsed_s']:.2f} s "
            f"(budget {report['budget_s']:g} s, mode {report['mode']})"
        ]
        if report.get("reason"):
            lines.append(f"weights: {report['reason']}")
        for edit in report.get("edits", []):
            lines.append(f"repair: {edit}")
        width = max((len(op["op"]) for op in report["ops"]), default=0)
        for op in report["ops"]:
            lines.append(
                f"  {op['op']:<{width}}  {op['from']:<8} confidence {op['confidence']:.2f}  {op['how']}"
            )
        return "\n".join(lines)


def synthesize(
    model: Model | str | os.PathLike,
    mode: str = "hybrid",
    budget_s: float = DEFAULT_BUDGET_S,
    seed: int = 0,
    config: SearchConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> SynthesisResult:
    """Recover a program that the model computes, verified when possible.

    Deterministic for a given seed (given time to finish); returns within
    `budget_s` plus the time of the stage running at the deadline. `config`
    None means `load_config()`: the tuned config file, else the defaults.
    `progress`, when given, is called with each stage's name as it starts.
    """
    start = time.monotonic()
    model = _as_model(model)
    if progress is not None and not callable(progress):
        raise InputError(f"progress must be a callable taking a stage name; got {type(progress).__name__}")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    budget_s = checked_budget(budget_s)
    seed = checked_seed(seed)
    if config is None:
        source = config_source()
        config, config_from = (read_config(source), str(source)) if source else (SearchConfig(), "defaults")
    elif isinstance(config, SearchConfig):
        config_from = "argument"
    else:
        raise InputError(f"config must be a SearchConfig or None; got {type(config).__name__}")
    deadline = start + float(budget_s)
    run = _Run(model, mode, float(budget_s), seed, start, config, deadline, progress)
    run.report["config"] = {"from": config_from, "changed": config.changed()}
    if mode == "neural" and run.checkpoint is None:
        raise MetaModelUnavailable(run.report["meta_model"])
    with one_blas_thread():
        return run.search()


def _as_model(model) -> Model:
    if isinstance(model, Model):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(os.fspath(model))
    raise InputError(
        f"synthesize() takes a raspsynth Model or the path of a raspsynth-model/1 file, not "
        f"{type(model).__name__} (a tracr AssembledTransformerModel converts with raspsynth.from_tracr)"
    )


class _Run:
    """One synthesis: the candidates tried, the timings, the best so far."""

    def __init__(
        self,
        model: Model,
        mode: str,
        budget_s: float,
        seed: int,
        start: float,
        config: SearchConfig,
        deadline: float,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.seed, self.start, self.config = model, seed, start, config
        self.deadline, self.progress = deadline, progress
        spec = model.spec
        self.timings: dict[str, float] = {}
        self.report: dict[str, Any] = {
            "mode": mode,
            "budget_s": budget_s,
            "seed": seed,
            "timings_s": self.timings,
            "edits": [],
            "ops": [],
            # What the report page needs to tabulate ops without the model.
            "model": {
                "vocab": list(spec.vocab),
                "max_seq_len": spec.max_seq_len,
                "output": "numerical" if spec.numerical else "categorical",
                "d_model": model.d_model,
                "layers": model.num_layers,
                "heads": model.num_heads,
            },
        }

        # The meta-model loads (and torch imports) only when a stage needs it.
        self.checkpoint, self._meta_model = None, None
        self.decompiled = None
        chosen = config.meta_model != DEFAULT_META_MODEL
        wanted = checkpoint_path(config.meta_model) if chosen else default_checkpoint()
        if mode == "search":
            self.report["meta_model"] = "not used (mode search)"
        elif wanted.is_file():
            self.checkpoint = wanted
            self.report["meta_model"] = f"available: {self.checkpoint.name} (not needed)"
        elif chosen:  # asked for by name: a missing file is an error, not a quiet fallback
            raise ConfigError(f"meta_model {config.meta_model!r}: no checkpoint at {wanted}")
        else:
            self.report["meta_model"] = f"no meta-model checkpoint at {wanted}"

    @property
    def meta_model(self):
        if self._meta_model is None and self.checkpoint is not None:
            from raspsynth.neural.train import load_meta_model

            self._meta_model = self._timed("load meta-model", load_meta_model, self.checkpoint)
            self.report["meta_model"] = f"loaded {self.checkpoint.name}"
        return self._meta_model

    def _timed(self, stage: str, fn, *args, **kwargs):
        if self.progress is not None:
            self.progress(stage)
        began = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.monotonic() - began

    def search(self) -> SynthesisResult:
        model, mode, config, deadline = self.model, self.report["mode"], self.config, self.deadline
        inputs = self._timed("probes", probe_inputs, model, seed=self.seed)
        self.inputs = inputs
        self.report["probes"] = len(inputs)
        if mode == "neural":
            return self._finish(self._neural(inputs, deadline, with_repair=False))
        best, readable = _Attempt(), False
        if config.symbolic:
            timeout = config.solver_timeout_ms if config.z3 else None
            decompiled = self._timed("decompile", decompile_structure, model, timeout, deadline)
            self.decompiled = decompiled  # the meta-model reads the same blocks
            self.report["recognised"] = readable = decompiled.recognised
            self.report["reason"] = decompiled.reason
            if readable:
                best = self._symbolic(decompiled, inputs, deadline)
                if best.verified or time.monotonic() > deadline:
                    return self._finish(best)
        else:
            self.report["reason"] = "weights not read: the symbolic layer is off (config.symbolic)"
        use_neural = mode == "hybrid" and self.checkpoint is not None
        if readable:  # read but not verified, even after repair: the meta-model's turn
            stages = ["neural"] if use_neural else []
        elif config.symbolic:
            # The meta-model reads the blocks the symbolic layer found, and it
            # found none: enumeration gets the whole budget (the meta-model
            # stays unloaded, "not needed").
            stages = ["enumerate"]
        else:
            stages = ["enumerate"] + (["neural"] if use_neural else [])
            if config.strategy == "neural-first":
                stages.reverse()
        for index, stage in enumerate(stages):
            now = time.monotonic()
            if now > deadline:
                break
            # Every stage but the last gets its share of what remains.
            last = index == len(stages) - 1
            until = deadline if last else now + (deadline - now) * config.first_share
            if stage == "enumerate":
                attempt = self._enumerate(inputs, until)
            else:
                attempt = self._neural(inputs, until, with_repair=config.repair)
            best = max(attempt, best, key=_Attempt.rank)  # on a tie, the later stage's status
            if best.verified:
                break
        return self._finish(best)

    def _enumerate(self, inputs, deadline) -> _Attempt:
        size = self.config.enumeration_size
        outcome = self._timed(
            "enumerate", enumerate_programs, self.model, inputs, deadline, self.seed, max_size=size
        )
        self.report["enumerated_terms"] = outcome.terms
        if outcome.program is None:
            why = "budget spent" if outcome.timed_out else f"no program of up to {size} ops"
            return _Attempt(status=f"no candidate: enumeration found none ({why})")
        origin = {
            op.name: ("search", 1.0, "enumerated from input/output behaviour") for op in outcome.program.ops
        }
        return _Attempt(outcome.program, outcome.verification, origin, status=None)

    def _symbolic(self, decompiled, inputs, deadline) -> _Attempt:
        model, program = self.model, decompiled.program
        origin = {
            op.name: ("symbolic", decompiled.confidence[op.name], decompiled.provenance[op.name])
            for op in program.ops
        }
        if time.monotonic() > deadline:
            return _Attempt(program, None, origin)
        result = self._timed("verify", verify, program, model, inputs, deadline, self.seed)
        if result.verified or time.monotonic() > deadline or not self.config.repair:
            return _Attempt(program, result, origin, status=None)
        outcome = self._timed(
            "repair",
            repair,
            program,
            model,
            inputs,
            deadline,
            decompiled=decompiled,
            confidence=decompiled.confidence,
            seed=self.seed,
            config=self.config,
        )
        self.report["edits"] = list(outcome.edits)
        self.report["screened"] = outcome.screened
        if outcome.verification is None:
            return _Attempt(program, result, origin, status=None)
        return _repaired(program, outcome, origin)

    def _neural(self, inputs, deadline, with_repair: bool) -> _Attempt:
        """The meta-model's sketches, best first: verified as they are (holes
        hold the model's argmax placeholder), and in hybrid mode repaired with
        the holes and least confident ops edited first. Without ranking
        (`config.ranking` off) the sketches come in a seeded random order and
        repair gets no per-op confidences."""
        from raspsynth.neural.decode import beam_search

        config = self.config
        sketches = self._timed(
            "neural",
            beam_search,
            self.meta_model,
            self.model,
            beam=config.beam,
            top_k=config.top_k,
            hole_threshold=config.hole_threshold,
            decompiled=self.decompiled,
        )
        if not sketches:
            return _Attempt(
                status="no candidate: the meta-model reads the symbolic layer's blocks, and these "
                "weights have none (not tracr-structured)"
            )
        if not config.ranking:
            sketches = [sketches[i] for i in np.random.default_rng(self.seed).permutation(len(sketches))]
        best = _Attempt()
        for rank, sketch in enumerate(sketches):
            if time.monotonic() > deadline:
                break
            origin = {
                op.name: (
                    "neural",
                    sketch.op_confidence.get(op.name, 1.0),
                    f"sketch {rank + 1}, " + _sketch_provenance(sketch, op.name),
                )
                for op in sketch.program.ops
            }
            result = self._timed("verify", verify, sketch.program, self.model, inputs, deadline, self.seed)
            attempt = _Attempt(sketch.program, result, origin, status=None)
            best = max(best, attempt, key=_Attempt.rank)
            if result.verified or not with_repair:
                return attempt  # verified, or mode neural: the best sketch as decoded, no search
            confidence = {
                name: (0.0 if name in sketch.holes else value) for name, value in sketch.op_confidence.items()
            }
            outcome = self._timed(
                "repair",
                repair,
                sketch.program,
                self.model,
                inputs,
                deadline,
                confidence=confidence if config.ranking else None,
                seed=self.seed,
                config=config,
            )
            if outcome.verification is not None:
                self.report["edits"] = list(outcome.edits)
                return _repaired(sketch.program, outcome, origin)
        return best

    def _finish(self, attempt: _Attempt) -> SynthesisResult:
        program, verification, status = attempt.program, attempt.verification, attempt.status
        if verification is not None:
            if verification.error:
                # A program tracr refuses to compile (a numerical mean of values
                # other than 0 and 1, ...) is no answer: it cannot be the model.
                status = f"failed: {verification.error}"
                program = None
            else:
                status = (
                    f"{'passed' if verification.verified else 'failed'} on {verification.probes} probe inputs"
                )
                if not verification.complete and verification.isomorphism and verification.isomorphism.found:
                    status += (
                        f" of {len(self.inputs)}, the rest skipped: the recompiled weights are isomorphic"
                    )
                elif not verification.complete:
                    status += f" (a random sample of the {len(self.inputs)}: the budget ran out)"
            self.report["undefined_positions"] = verification.undefined_positions
        self.report["verification"] = status
        if program is not None:
            for op in program.ops:
                if op.name in attempt.edited:
                    entry = ("search", 1.0 if verification.verified else 0.0, "repaired: see edits")
                else:
                    entry = attempt.origin.get(op.name, ("search", 0.0, "added by repair"))
                source, confidence, how = entry
                self.report["ops"].append(
                    {"op": op.name, "kind": op.kind, "from": source, "confidence": confidence, "how": how}
                )
        verified, certificate = self._certificate(verification)
        agreement = verification.agreement if verification is not None else 0.0
        self.report["certificate"] = certificate
        if program is None:
            self.report["elapsed_s"] = time.monotonic() - self.start
            return SynthesisResult(None, "", False, 0.0, self.report, None)
        lambdas = self._timed("expressions", self._expressions, program)
        self.report["expressions"] = lambdas
        self.report["elapsed_s"] = time.monotonic() - self.start
        return SynthesisResult(
            to_rasp(program),
            to_source(program, lambdas),
            verified,
            agreement,
            self.report,
            program,
            certificate,
        )

    def _certificate(self, verification: Verification | None) -> tuple[bool, str]:
        """(verified, certificate) for the final verification.

        "exhaustive" when every input ran and matched; else "isomorphic" when
        the checked probes matched and the recompiled weights equal the
        model's up to its symmetries (`weights_isomorphic`): a proof on all
        inputs, which also stands when the budget cut the probe check short;
        else "sampled" when the whole probe set ran and matched. A probe
        check cut short with no isomorphism verifies nothing."""
        if verification is None or not verification.verified:
            return False, "none"
        spec = self.model.spec
        if verification.complete and verification.probes >= count_inputs(len(spec.vocab), spec.max_seq_len):
            return True, "exhaustive"
        isomorphism = verification.isomorphism
        if isomorphism is None and verification.candidate is not None:
            until = max(self.deadline, time.monotonic() + ISOMORPHISM_GRACE_S)
            isomorphism = self._timed(
                "isomorphism", weights_isomorphic, self.model, verification.candidate, self.inputs, until
            )
        if isomorphism is not None:
            self.report["isomorphism"] = isomorphism.reason
            if isomorphism.found:
                return True, "isomorphic"
        if verification.complete:
            return True, "sampled"
        return False, "none"

    def _expressions(self, program: Program) -> dict[str, str]:
        """A readable lambda for each table function or predicate, where the MIPS-style
        expression search finds one (equal to the table on its domain) within
        `config.expression_size` symbols, while the budget lasts."""
        found = {}
        for op in program.ops:
            if op.fn is None or op.fn.name != "table" or self.config.expression_size == 0:
                continue
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            expression = find_expression(
                dict(op.fn.table),
                op.fn.arity,
                max_size=self.config.expression_size,
                time_budget_s=min(EXPRESSION_BUDGET_S, left),
                names=PREDICATE_ARGUMENTS if op.kind == "select" else ("x", "y"),
            )
            if expression.method != "table":
                found[op.name] = expression.source
        return found


def _sketch_provenance(sketch, name: str) -> str:
    if name in sketch.holes:
        return f"hole: {sketch.holes[name]}"
    if name in sketch.grounded:
        return "as decoded, its table token filled from the weights"
    return "as decoded"
