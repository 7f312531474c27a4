"""Verified rate against compression ratio (dim / D), learned compression.

For each test-split program (default distribution, none trained or tuned
on), the residual is compressed in tracr's CompressedTransformer form
(`tracr_bridge.learned_compression`) to the visited-state rank, then one
dimension fewer at a time, until training no longer reaches equal decoded
outputs on every probe input (the compressed model stops reproducing the
original) or `--max-drop` dimensions below the rank. Every compressed model
that reproduces the original is synthesised in hybrid mode.

Writes compression_curve.json (one row per program and width) and
compression_curve.png (verified rate, and the share of programs whose
compression still reproduces the original, against dim / D in bins) under
--out (default experiments/results).

    python experiments/compression_curve.py [--n 12] [--max-drop 4] [--budget 30] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from program_sets import sampled_cases  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CURVE_SEED = 9008
BIN = 0.1  # width of the dim / D bins in the plot


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def descend(job: tuple) -> list[dict]:
    """One program's rows, from the visited-state rank downwards."""
    import raspsynth
    from raspsynth.tracr_bridge.learned_compression import learn_compression

    case, max_drop, budget = job
    model = case.model
    rank = model.visited_basis().shape[1]
    rows = []
    for dim in range(rank, max(rank - max_drop, 0) - 1, -1):
        began = time.monotonic()
        learned = learn_compression(model, dim, seed=0)
        row = {
            "name": case.name,
            "n_sops": case.n_sops,
            "d_model": model.d_model,
            "rank": rank,
            "dim": dim,
            "ratio": dim / model.d_model,
            "agreement": learned.agreement,
            "reproduces": learned.exact,
            "interference": learned.interference,
            "train_s": time.monotonic() - began,
            "verified": None,
            "synth_s": None,
        }
        if learned.exact:
            began = time.monotonic()
            result = raspsynth.synthesize(learned.model, budget_s=budget)
            row["verified"], row["synth_s"] = bool(result.verified), time.monotonic() - began
        rows.append(row)
        if not learned.exact:
            break
    return rows


def binned(rows: list[dict]) -> list[dict]:
    """Per dim / D bin: programs tried, the share reproducing the original,
    and the verified share of those."""
    out = []
    for low in np.arange(0.0, 1.0, BIN):
        here = [r for r in rows if low <= r["ratio"] < low + BIN]
        if not here:
            continue
        kept = [r for r in here if r["reproduces"]]
        out.append(
            {
                "ratio": f"{low:.1f}-{low + BIN:.1f}",
                "tried": len(here),
                "reproduces": len(kept) / len(here),
                "verified": sum(r["verified"] for r in kept) / len(kept) if kept else None,
                "kept": len(kept),
            }
        )
    return out


def by_drop(rows: list[dict]) -> list[dict]:
    """Per number of dimensions below the visited-state rank: programs
    tried, the dim / D range, how many reproduce the original, how many of
    those verify, and the interference left (median)."""
    out = []
    for drop in sorted({r["rank"] - r["dim"] for r in rows}):
        here = [r for r in rows if r["rank"] - r["dim"] == drop]
        kept = [r for r in here if r["reproduces"]]
        out.append(
            {
                "below_rank": drop,
                "tried": len(here),
                "ratio": [min(r["ratio"] for r in here), max(r["ratio"] for r in here)],
                "reproduce": len(kept),
                "verified": sum(bool(r["verified"]) for r in kept),
                "interference": float(np.median([r["interference"] for r in kept])) if kept else None,
            }
        )
    return out


def print_tables(bins: list[dict], drops: list[dict]) -> None:
    print("| dim / D | tried | reproduces | verified (of those) |\n|---|---|---|---|")
    for b in bins:
        verified = f"{b['verified']:.0%}" if b["verified"] is not None else "-"
        print(f"| {b['ratio']} | {b['tried']} | {b['reproduces']:.0%} | {verified} ({b['kept']}) |")
    print("\n| below the rank | tried | dim / D | reproduce | verified | interference (median) |")
    print("|---|---|---|---|---|---|")
    for d in drops:
        low, high = d["ratio"]
        left = f"{d['interference']:.1e}" if d["interference"] is not None else "-"
        print(
            f"| {d['below_rank']} | {d['tried']} | {low:.2f}-{high:.2f} | {d['reproduce']} | "
            f"{d['verified']} | {left} |"
        )


def plot(bins: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(bins))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    reproduces = [b["reproduces"] * 100 for b in bins]
    ax.plot(x, reproduces, "s--", color="grey", label="compression reproduces outputs")
    verified = [b["verified"] * 100 if b["verified"] is not None else np.nan for b in bins]
    ax.plot(x, verified, "o-", color="C0", label="verified (of those reproducing)")
    for xi, b in zip(x, bins):
        ax.annotate(f"n={b['tried']}", (xi, 2), ha="center", fontsize=8)
    ax.set_xticks(x, [b["ratio"] for b in bins])
    ax.set_xlabel("compression ratio dim / D (learned, from the visited-state rank down)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=12, help="test-split programs")
    parser.add_argument("--max-drop", type=int, default=4, help="dimensions below the rank, at most")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per synthesis")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    began = time.monotonic()
    cases = sampled_cases("curve", args.n, CURVE_SEED, "test", transform="plain")
    jobs = [(case, args.max_drop, args.budget) for case in cases]
    context = multiprocessing.get_context("spawn")  # tracr/JAX threads do not survive fork
    with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_init_worker) as pool:
        rows = [row for rows in tqdm(pool.map(descend, jobs), total=len(jobs), desc="curve") for row in rows]
    bins = binned(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "args": vars(args),
        "bins": bins,
        "below_rank": by_drop(rows),
        "rows": rows,
        "wall_s": time.monotonic() - began,
    }
    (out / "compression_curve.json").write_text(json.dumps(report, indent=2))
    plot(bins, out / "compression_curve.png")
    print_tables(bins, report["below_rank"])


if __name__ == "__main__":
    main()
