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
experiments/results/eval_synthesis.json. synthesize() runs with the config it
loads by default (the tuned config file, see raspsynth.search.config).

    python experiments/eval_synthesis.py [--n 200] [--mode hybrid] [--budget 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from program_sets import TRANSFORM_SEED, lib_cases, sampled_cases  # noqa: E402

from raspsynth import synthesize  # noqa: E402
from raspsynth.search.config import config_source  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


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
    parser.add_argument("--out", default=str(RESULTS), help="directory for the results")
    parser.add_argument("--quick", action="store_true", help="10 test-split programs")
    args = parser.parse_args()
    if args.quick:
        args.n = 10

    began = time.monotonic()
    sampled = sampled_cases("test", args.n, args.seed, "test", transform="plain")
    rows = {"test": [], "test_permuted": [], "lib": [], "lib_permuted": []}
    for case in tqdm(sampled, desc="test split"):
        for key, m in (("test", case.model), ("test_permuted", case.model.permuted(TRANSFORM_SEED))):
            rows[key].append({"n_sops": case.n_sops, **run_one(m, args.mode, args.budget)})
    lib = {}
    for case in lib_cases(transform="plain"):
        for key, m in (("lib", case.model), ("lib_permuted", case.model.permuted(TRANSFORM_SEED))):
            row = {"name": case.name, **run_one(m, args.mode, args.budget)}
            rows[key].append(row)
            lib.setdefault(case.name, {})[key] = row

    summary = {key: summarise(value) for key, value in rows.items()}
    by_length = {}
    for length in sorted({r["n_sops"] for r in rows["test"]}):
        subset = [r for key in ("test", "test_permuted") for r in rows[key] if r["n_sops"] == length]
        by_length[length] = summarise(subset)
    report = {
        "config": vars(args) | {"permutation_seed": TRANSFORM_SEED, "search_config": str(config_source())},
        "summary": summary,
        "by_length": by_length,
        "lib": lib,
        "wall_s": time.monotonic() - began,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_synthesis.json").write_text(json.dumps(report, indent=2))

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
