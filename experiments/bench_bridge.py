"""Benchmark the tracr bridge against stock tracr, side by side in one run.

Compile: `compile_program` vs tracr's `compile_rasp_to_model` on N distinct
random programs (default 50, each with new shapes), checking the arrays are
equal as it goes. Forward: `Model.run` (batched, all probe inputs) vs tracr's
`AssembledTransformerModel.apply` (one sequence per call) on the same
programs, in sequences per second. Outputs are compared by the rule of
`raspsynth.tracr_bridge.outputs`: positions where every logit is at float-noise
level are undefined on both sides (there argmax depends on the CPU, not on the
model); elsewhere the decoded outputs must be equal.

    python experiments/bench_bridge.py [--programs 50] [--apply-programs 4] [--seed 0]

Writes experiments/results/bench_bridge.json and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from raspsynth.program.sampler import sample_program
from raspsynth.tracr_bridge import compile_program, from_tracr, probe_inputs, rows_equal
from raspsynth.tracr_bridge.compile import tracr_outputs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp

RESULTS = Path(__file__).resolve().parent / "results"
COMPILE_TARGET, FORWARD_TARGET = 100.0, 1000.0


def distinct_shape_programs(n: int, seed: int):
    """n sampled programs whose compiled shapes are pairwise distinct, so
    stock tracr cannot reuse an XLA compilation from an earlier program."""
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    while len(out) < n:
        sample = sample_program(rng)
        program = to_rasp(sample.program)
        model = compile_program(program, sample.vocab, sample.max_seq_len)
        shape = tuple(a.shape for a in model.arrays().values())
        if shape not in seen:
            seen.add(shape)
            out.append((sample, program))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--programs", type=int, default=50)
    parser.add_argument("--apply-programs", type=int, default=4, help="programs timed with tracr's apply")
    parser.add_argument("--apply-seqs", type=int, default=10, help="sequences per program for tracr's apply")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5 programs, 1 timed with apply on 2 sequences")
    parser.add_argument("--out", default=str(RESULTS), help="directory for the results")
    args = parser.parse_args()
    if args.quick:
        args.programs, args.apply_programs, args.apply_seqs = 5, 1, 2
    warnings.filterwarnings("ignore")
    from tracr.compiler import compiling

    programs = distinct_shape_programs(args.programs, args.seed)
    ours_s = stock_s = 0.0
    stock_models, ours_models = [], []
    for sample, program in tqdm(programs, desc="compile (ours vs stock tracr)"):
        start = time.perf_counter()
        ours = compile_program(program, sample.vocab, sample.max_seq_len)
        ours_s += time.perf_counter() - start
        start = time.perf_counter()
        stock = compiling.compile_rasp_to_model(program, sample.vocab, sample.max_seq_len, compiler_bos="BOS")
        stock_s += time.perf_counter() - start
        reference = from_tracr(stock)
        if not all(np.array_equal(a, b) for a, b in zip(ours.arrays().values(), reference.arrays().values())):
            raise SystemExit("compile_program differs from stock tracr: benchmark invalid")
        stock_models.append(stock)
        ours_models.append(ours)

    ours_seqs = ours_fwd_s = stock_seqs = stock_fwd_s = 0.0
    rng = np.random.default_rng(args.seed)
    for i in tqdm(range(args.apply_programs), desc="forward (ours vs tracr apply)"):
        model, stock = ours_models[i], stock_models[i]
        probes = probe_inputs(model)
        start = time.perf_counter()
        outputs = model.run(probes, mark_undefined=True)
        ours_fwd_s += time.perf_counter() - start
        ours_seqs += len(probes)
        picks = rng.choice(len(probes), size=min(args.apply_seqs, len(probes)), replace=False)
        start = time.perf_counter()
        for j in picks:
            stock.apply(["BOS", *probes[j]])
        stock_fwd_s += time.perf_counter() - start
        stock_seqs += len(picks)
        # Checked apart from the timing: the same apply, by the output rule.
        theirs = tracr_outputs(stock, [probes[j] for j in picks])
        if not all(rows_equal(outputs[j], t, model.spec.numerical) for j, t in zip(picks, theirs)):
            raise SystemExit("Model.run differs from tracr apply: benchmark invalid")

    compile_ratio = stock_s / ours_s
    forward_ratio = (ours_seqs / ours_fwd_s) / (stock_seqs / stock_fwd_s)
    result = {
        "programs": args.programs,
        "compile_ours_ms_per_program": 1000 * ours_s / args.programs,
        "compile_stock_ms_per_program": 1000 * stock_s / args.programs,
        "compile_ratio": compile_ratio,
        "forward_ours_seqs_per_s": ours_seqs / ours_fwd_s,
        "forward_stock_seqs_per_s": stock_seqs / stock_fwd_s,
        "forward_ratio": forward_ratio,
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_bridge.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"compile: ours {result['compile_ours_ms_per_program']:.1f} ms/program, "
        f"stock tracr {result['compile_stock_ms_per_program']:.0f} ms/program -> "
        f"{compile_ratio:.0f}x (target {COMPILE_TARGET:.0f}x)"
    )
    print(
        f"forward: ours {result['forward_ours_seqs_per_s']:.0f} seq/s, "
        f"tracr apply {result['forward_stock_seqs_per_s']:.2f} seq/s -> "
        f"{forward_ratio:.0f}x (target {FORWARD_TARGET:.0f}x)"
    )
    # --quick checks that the script runs; its few programs say little about speed.
    if not args.quick and (compile_ratio < COMPILE_TARGET or forward_ratio < FORWARD_TARGET):
        raise SystemExit("below target")


if __name__ == "__main__":
    main()
