"""Evaluate `synthesize()` on the held-out test split and on tracr's lib programs.

Programs: N programs of the default distribution (1..10 SOps, vocab {0..4},
max_seq_len 5) drawn with `raspsynth.data.sampling.sample_compiled` (the
training-data pipeline's own sampler, compile check and deduplication) from
seed 9001, keeping only those whose canonical hash puts them in the *test*
split (`split_of`): no program here, nor any renaming or table-equal variant,
can be in a training split. Plus tracr's 8 lib programs with their usual
vocabularies. Each model is synthesized as compiled and with its residual
permuted (seed 11).

Reports the verified rate, median and p95 wall time per program, by program
length and for lib programs one by one; writes
experiments/results/eval_synthesis.json.

    python experiments/eval_synthesis.py [--n 200] [--mode hybrid] [--budget 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from raspsynth import synthesize
from raspsynth.data.generate import split_of
from raspsynth.data.sampling import SamplingStats, sample_compiled
from raspsynth.program.sampler import SamplerConfig
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs

RESULTS = Path(__file__).resolve().parent / "results"
PERMUTATION_SEED = 11


def test_split_models(n: int, seed: int):
    """(n_sops, model) for n test-split programs of the default distribution."""
    rng = np.random.default_rng(seed)
    stats, seen, out = SamplingStats(), set(), []
    while len(out) < n:
        compiled = sample_compiled(rng, SamplerConfig(), stats, seen)
        seen.add(compiled.hash)
        if split_of(compiled.hash) == "test":
            out.append((compiled.sample.program.num_sops, compiled.model))
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_one(model, mode: str, budget: float) -> dict:
    began = time.monotonic()
    result = synthesize(model, mode=mode, budget_s=budget, seed=0)
    return {
        "verified": result.verified,
        "agreement": result.agreement,
        "seconds": time.monotonic() - began,
        "repaired": bool(result.report["edits"]),
        "enumerated": result.report.get("recognised") is False,
    }


def summarise(rows: list[dict]) -> dict:
    times = [r["seconds"] for r in rows]
    return {
        "programs": len(rows),
        "verified_rate": sum(r["verified"] for r in rows) / len(rows),
        "median_s": statistics.median(times),
        "p95_s": percentile(times, 95),
        "max_s": max(times),
        "repaired": sum(r["repaired"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="test-split programs")
    parser.add_argument("--seed", type=int, default=9001)
    parser.add_argument("--mode", default="hybrid", choices=("search", "hybrid"))
    parser.add_argument("--budget", type=float, default=60.0)
    args = parser.parse_args()

    began = time.monotonic()
    sampled = test_split_models(args.n, args.seed)
    rows = {"test": [], "test_permuted": [], "lib": [], "lib_permuted": []}
    for n_sops, model in tqdm(sampled, desc="test split"):
        for key, m in (("test", model), ("test_permuted", model.permuted(PERMUTATION_SEED))):
            rows[key].append({"n_sops": n_sops, **run_one(m, args.mode, args.budget)})
    lib = {}
    for name, entry in lib_programs().items():
        model = compile_program(entry.build(), entry.vocab, entry.max_seq_len)
        for key, m in (("lib", model), ("lib_permuted", model.permuted(PERMUTATION_SEED))):
            row = {"name": name, **run_one(m, args.mode, args.budget)}
            rows[key].append(row)
            lib.setdefault(name, {})[key] = row

    summary = {key: summarise(value) for key, value in rows.items()}
    by_length = {}
    for length in sorted({r["n_sops"] for r in rows["test"]}):
        subset = [r for key in ("test", "test_permuted") for r in rows[key] if r["n_sops"] == length]
        by_length[length] = summarise(subset)
    report = {
        "config": vars(args) | {"permutation_seed": PERMUTATION_SEED},
        "summary": summary,
        "by_length": by_length,
        "lib": lib,
        "wall_s": time.monotonic() - began,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_synthesis.json").write_text(json.dumps(report, indent=2))

    print(f"mode {args.mode}, budget {args.budget:g} s, {len(sampled)} test-split programs, seed {args.seed}")
    print("| set | programs | verified | median s | p95 s | max s | repaired |")
    print("|---|---|---|---|---|---|---|")
    for key, s in summary.items():
        print(
            f"| {key} | {s['programs']} | {100 * s['verified_rate']:.1f}% | {s['median_s']:.2f} "
            f"| {s['p95_s']:.2f} | {s['max_s']:.2f} | {s['repaired']} |"
        )
    print("\nby length (test split, plain and permuted together)")
    print("| SOps | programs | verified | median s | p95 s |")
    print("|---|---|---|---|---|")
    for length, s in by_length.items():
        print(
            f"| {length} | {s['programs']} | {100 * s['verified_rate']:.1f}% | {s['median_s']:.2f} "
            f"| {s['p95_s']:.2f} |"
        )
    print("\nlib programs (plain / permuted)")
    for name, entry in lib.items():
        plain, permuted = entry["lib"], entry["lib_permuted"]
        print(
            f"  {name:<18} {'verified' if plain['verified'] else 'FAILED'} {plain['seconds']:.2f} s / "
            f"{'verified' if permuted['verified'] else 'FAILED'} {permuted['seconds']:.2f} s"
        )
    print(f"\nwall time {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
