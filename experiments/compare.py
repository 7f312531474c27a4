"""Pure-neural against search-only against hybrid, and the hybrid's ablations,
on the same programs.

Sets (see program_sets.py; every sampled program is in the *test* split by
canonical hash, so none was trained or tuned on):
- test: the default distribution's test split, residual permuted;
- shifted: vocab 6..10, max_seq_len 6..10, 6..14 SOps, permuted;
- lambdas: default programs whose Maps on tokens compute human-style lambdas
  the library does not name, permuted;
- lib: tracr's 8 lib programs, permuted;
- rotated, mixed, lossless: test-split programs with the residual rotated,
  mapped by a random invertible non-orthogonal matrix, or projected onto
  the span of its visited states (`Model.compressed("lossless")`);
- learned: test-split programs in tracr's CompressedTransformer form at the
  visited-state rank (`Model.compressed("learned")`); programs whose
  training does not reach exact agreement are skipped, and the header
  says how many were kept;
- devsets-rotated: the models in ../shared/devsets/ (no one here wrote
  them; measured only), rotated.

Variants: `neural`, `search` and `hybrid` with the default SearchConfig;
the hybrid without symbolic regression (`-symbolic`: nothing read off the
weights, so sketches, repair and enumeration only), without Z3 (`-z3`),
without repair (`-repair`) and without the meta-model's ranking (`-ranking`:
sketches in random order, no per-op confidences); and `hybrid tuned` with
the tuned config file when there is one (`--tuned`, default
raspsynth/search/tuned_config.json), so tuned and default are measured side
by side on the same programs.

Reports verified rate, mean agreement and wall time (median, p95) per set
and variant, by program length and by op kind; writes compare.csv (one row
per run), compare.md (the tables), compare.png and compare.json under
--out (default experiments/results). Runs --workers processes, one thread
each; times are per synthesis, measured inside the worker.

    python experiments/compare.py [--quick] [--n-test 100] [--n-shifted 30] [--n-rotated 16]
        [--n-lambdas 30] [--n-mixed 16] [--n-lossless 16] [--n-learned 16] [--budget 10] [--workers 2]
        [--sets test shifted ...] [--variants hybrid search ...]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from program_sets import SHIFTED, devset_cases, lambda_cases, lib_cases, sampled_cases  # noqa: E402

from raspsynth.search.config import TUNED_CONFIG, SearchConfig, read_config  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TEST_SEED = 9001
SHIFTED_SEED = 9002
ROTATED_SEED = 9003
LAMBDAS_SEED = 9004
MIXED_SEED = 9005
LOSSLESS_SEED = 9006
LEARNED_SEED = 9007
SETS = ("test", "shifted", "lambdas", "lib", "rotated", "mixed", "lossless", "learned", "devsets-rotated")

BASE_VARIANTS = {
    "neural": ("neural", SearchConfig()),
    "search": ("search", SearchConfig()),
    "hybrid": ("hybrid", SearchConfig()),
    "hybrid -symbolic": ("hybrid", SearchConfig(symbolic=False)),
    "hybrid -z3": ("hybrid", SearchConfig(z3=False)),
    "hybrid -repair": ("hybrid", SearchConfig(repair=False)),
    "hybrid -ranking": ("hybrid", SearchConfig(ranking=False)),
}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_case(job: tuple) -> dict:
    """One synthesis in a worker: the row it adds to compare.csv."""
    from raspsynth import synthesize

    case, variant, mode, config, budget = job
    began = time.monotonic()
    result = synthesize(case.model, mode=mode, budget_s=budget, seed=0, config=config)
    return {
        "set": case.set,
        "variant": variant,
        "program": case.name,
        "n_sops": case.n_sops,
        "kinds": " ".join(case.kinds),
        "verified": result.verified,
        "agreement": round(result.agreement, 6),
        "seconds": round(time.monotonic() - began, 4),
    }


def summarise(rows: list[dict]) -> dict:
    times = [r["seconds"] for r in rows]
    return {
        "programs": len(rows),
        "verified_rate": sum(r["verified"] for r in rows) / len(rows),
        "agreement": float(np.mean([r["agreement"] for r in rows])),
        "median_s": statistics.median(times),
        "p95_s": float(np.percentile(times, 95)),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(rows: list[dict], variants: list[str], sets: list[str]) -> str:
    lines = [
        "| set | variant | programs | verified | agreement | median s | p95 s |",
        "|---|---|---|---|---|---|---|",
    ]
    for set_name in sets:
        for variant in variants:
            subset = [r for r in rows if r["set"] == set_name and r["variant"] == variant]
            if subset:
                s = summarise(subset)
                lines.append(
                    f"| {set_name} | {variant} | {s['programs']} | {_pct(s['verified_rate'])} "
                    f"| {s['agreement']:.3f} | {s['median_s']:.2f} | {s['p95_s']:.2f} |"
                )
    sampled = [r for r in rows if r["set"] in ("test", "shifted", "lambdas")]
    lengths = sorted({r["n_sops"] for r in sampled})
    lines += ["", "Verified rate by program length (SOps), test, shifted and lambdas sets together:", ""]
    lines += ["| variant | " + " | ".join(str(n) for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for variant in variants:
        cells = []
        for n in lengths:
            subset = [r for r in sampled if r["variant"] == variant and r["n_sops"] == n]
            cells.append(_pct(summarise(subset)["verified_rate"]) if subset else "")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    kinds = sorted({k for r in rows for k in r["kinds"].split()})
    lines += ["", "Verified rate over the programs that use each op kind, all sets:", ""]
    lines += ["| variant | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for variant in variants:
        cells = []
        for kind in kinds:
            subset = [r for r in rows if r["variant"] == variant and kind in r["kinds"].split()]
            cells.append(_pct(summarise(subset)["verified_rate"]) if subset else "")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], variants: list[str], sets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        rates, medians = [], []
        for set_name in sets:
            subset = [r for r in rows if r["set"] == set_name and r["variant"] == variant]
            s = summarise(subset) if subset else {"verified_rate": 0.0, "median_s": 0.0}
            rates.append(100 * s["verified_rate"])
            medians.append(s["median_s"])
        xs = np.arange(len(sets)) + (i - (len(variants) - 1) / 2) * width
        left.bar(xs, rates, width, label=variant)
        right.bar(xs, medians, width, label=variant)
    for axis, label in ((left, "verified (%)"), (right, "median wall time per program (s)")):
        axis.set_xticks(np.arange(len(sets)), sets)
        axis.set_ylabel(label)
    left.set_ylim(0, 105)
    right.set_yscale("log")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    fig.suptitle("raspsynth: neural vs search vs hybrid, and the hybrid's ablations")
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few programs per set, budget 5 s")
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--n-shifted", type=int, default=30)
    parser.add_argument("--n-rotated", type=int, default=16)
    parser.add_argument("--n-lambdas", type=int, default=30)
    parser.add_argument("--n-mixed", type=int, default=16)
    parser.add_argument("--n-lossless", type=int, default=16)
    parser.add_argument("--n-learned", type=int, default=16)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS, help="run only these sets")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per synthesis")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--tuned", default=str(TUNED_CONFIG), help="tuned config file (skipped if absent)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--variants", nargs="+", default=None, help="run only these variants (names as in the table)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_test, args.n_shifted, args.n_rotated, args.n_lambdas, args.budget = 6, 3, 3, 3, 5.0
        args.n_mixed, args.n_lossless, args.n_learned = 3, 3, 3
        args.sets = [s for s in args.sets if s != "devsets-rotated"]

    began = time.monotonic()
    variants = dict(BASE_VARIANTS)
    if Path(args.tuned).exists():
        variants["hybrid tuned"] = ("hybrid", read_config(args.tuned))
    if args.variants:
        unknown = set(args.variants) - set(variants)
        if unknown:
            parser.error(f"unknown variants {sorted(unknown)}; known: {list(variants)}")
        variants = {name: variants[name] for name in args.variants}

    dropped: list[str] = []  # learned compressions that missed exact agreement

    def in_basis(name: str, n: int, seed: int) -> list:
        return sampled_cases(name, n, seed, "test", transform=name, dropped=dropped)

    builders = {
        "test": lambda: sampled_cases("test", args.n_test, TEST_SEED, "test"),
        "shifted": lambda: sampled_cases("shifted", args.n_shifted, SHIFTED_SEED, "test", SHIFTED),
        "lambdas": lambda: lambda_cases(args.n_lambdas, LAMBDAS_SEED, "test"),
        "lib": lambda: lib_cases(limit=4 if args.quick else None),
        # Test-split programs in another residual basis, the set named after it.
        "rotated": lambda: in_basis("rotated", args.n_rotated, ROTATED_SEED),
        "mixed": lambda: in_basis("mixed", args.n_mixed, MIXED_SEED),
        "lossless": lambda: in_basis("lossless", args.n_lossless, LOSSLESS_SEED),
        "learned": lambda: in_basis("learned", args.n_learned, LEARNED_SEED),
        "devsets-rotated": lambda: devset_cases("devsets-rotated", "rotated"),
    }
    cases = [case for name in SETS if name in args.sets for case in builders[name]()]
    sets = list(dict.fromkeys(c.set for c in cases))
    jobs = [
        (case, name, mode, config, args.budget) for case in cases for name, (mode, config) in variants.items()
    ]
    context = multiprocessing.get_context("spawn")  # tracr/JAX threads do not survive fork
    with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_init_worker) as pool:
        rows = list(tqdm(pool.map(run_case, jobs), total=len(jobs), desc="compare"))
    wall = time.monotonic() - began

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    names = list(variants)
    table = markdown(rows, names, sets)
    header = (
        f"{len(cases)} programs ({', '.join(f'{s}: {sum(c.set == s for c in cases)}' for s in sets)}), "
        f"budget {args.budget:g} s per synthesis, {args.workers} workers, wall time {wall:.0f} s\n\n"
    )
    if "learned" in sets:
        kept = sum(c.set == "learned" for c in cases)
        header += (
            f"learned: {kept} of {kept + len(dropped)} test-split programs trained to exact agreement "
            "at the visited-state rank (the others skipped)\n\n"
        )
    (out / "compare.md").write_text(header + table)
    plot(rows, names, sets, out / "compare.png")
    summary = {
        set_name: {
            v: summarise([r for r in rows if r["set"] == set_name and r["variant"] == v])
            for v in names
            if any(r["set"] == set_name and r["variant"] == v for r in rows)
        }
        for set_name in sets
    }
    report = {
        "args": vars(args),
        "variants": {
            name: {"mode": mode, "config": dataclasses.asdict(c)} for name, (mode, c) in variants.items()
        },
        "summary": summary,
        "learned_dropped": dropped,
        "wall_s": wall,
    }
    (out / "compare.json").write_text(json.dumps(report, indent=2))
    print(header + table)


if __name__ == "__main__":
    main()
