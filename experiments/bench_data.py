"""Benchmark the training-data pipeline end to end (`raspsynth data generate`).

Generates N distinct programs of the default distribution (1..10 SOps, vocab
{0..4}, max_seq_len 5) into a temporary directory with the process-pool
backend and reports programs per second, wall clock from start to the last
shard on disk (worker start-up included), with the sampler's compile-failure,
miscompile and duplicate rates.

    python experiments/bench_data.py [--n 4000] [--workers 2] [--seed 0]

Writes experiments/results/bench_data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from raspsynth.data import generate

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 programs")
    parser.add_argument("--out", default=str(RESULTS), help="directory for the results")
    args = parser.parse_args()
    if args.quick:
        args.n = 200
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = generate(out, args.n, seed=args.seed, workers=args.workers)
        elapsed = time.perf_counter() - start
    rate = summary["programs"] / elapsed
    result = {
        **summary,
        "workers": args.workers,
        "seconds": elapsed,
        "programs_per_s": rate,
        "miscompile_rate": summary["miscompiles"] / summary["sampled"],
        "machine_cores": os.cpu_count(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_data.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{summary['programs']} programs in {elapsed:.1f} s with {args.workers} workers: "
        f"{rate:.1f} programs/s (target {TARGET:.0f})"
    )
    print(
        f"sampled {summary['sampled']}: compile failures {summary['compile_failure_rate']:.2%}, "
        f"miscompiles {result['miscompile_rate']:.2%}, "
        f"duplicates skipped before compiling {summary['duplicates_skipped_in_shard']}"
    )


if __name__ == "__main__":
    main()
