"""Synthesis on the development sets no one here wrote (../shared/devsets/).

For each set (interpbench: human-written programs compiled by tracr; peer:
another team's sampler), synthesizes every model at the given budget, one
model at a time in a worker process (`raspsynth.batch.synthesize_many`,
resumable), and prints per set: verified share, the certificates (isomorphic /
exhaustive / sampled / none), median and p95 time, the worst ratio of
elapsed time to budget (the promise is budget + max(1 s, 10%)), and each
miss with its status.
Measurement only: nothing is tuned or selected on these sets.

    python experiments/eval_devsets.py [--budget 30] [--sets interpbench peer] [--jobs 1] [--resume]
        [--residual as-compiled|rotated|mixed|lossless]

--residual changes each model's residual basis first (seeded by its position
in the set): a random rotation, a random invertible non-orthogonal map, or
the lossless projection onto its visited states (`Model.compressed`). The
transformed models are written under the results folder and synthesized from
there, like any file.

Each run starts afresh; --resume continues an interrupted one.

Writes experiments/results/eval_devsets.json (and a .jsonl of rows per set).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from raspsynth import load_model
from raspsynth.batch import synthesize_many

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "experiments" / "results"
CERTIFICATES = ("isomorphic", "exhaustive", "sampled", "none")
RESIDUALS = ("as-compiled", "rotated", "mixed", "lossless")


def in_residual(models: list[str], residual: str, folder: Path) -> list[str]:
    """`models` with their residual basis changed (see the module docstring),
    saved in `folder`; the files themselves for "as-compiled"."""
    if residual == "as-compiled":
        return models
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed, path in enumerate(models):
        model = load_model(path)
        if residual == "rotated":
            model = model.rotated(seed)
        elif residual == "mixed":
            model = model.mixed(seed)
        else:
            model = model.compressed("lossless", seed=seed)
        target = folder / Path(path).name
        model.save(target)
        out.append(str(target))
    return out


def summarise(rows: list[dict], budget: float) -> dict:
    elapsed = np.array([row["elapsed_s"] for row in rows])
    certificates = Counter(row["certificate"] for row in rows)
    return {
        "models": len(rows),
        "verified": sum(row["verified"] for row in rows),
        "certificates": {c: certificates.get(c, 0) for c in CERTIFICATES},
        "median_s": float(np.median(elapsed)),
        "p95_s": float(np.percentile(elapsed, 95)),
        "worst_elapsed_over_budget": float(elapsed.max() / budget),
        "over_promise": int(np.sum(elapsed > budget + max(1.0, 0.1 * budget))),
        "errors": [row["model"] for row in rows if row["status"] not in ("verified", "not verified")],
        "misses": {Path(row["model"]).stem: _why(row) for row in rows if not row["verified"]},
    }


def _why(row: dict) -> str:
    return f"{row['status']}, agreement {row['agreement']:.3f}, {row['elapsed_s']:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--sets", nargs="+", default=["interpbench", "peer"])
    parser.add_argument("--jobs", type=int, default=1, help="models at once (1: timings undisturbed)")
    parser.add_argument("--mode", default="hybrid", choices=("search", "hybrid"))
    parser.add_argument("--devsets", default=str(REPO.parent / "shared" / "devsets"))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--resume", action="store_true", help="continue the rows of an interrupted run")
    parser.add_argument("--residual", default="as-compiled", choices=RESIDUALS)
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"budget_s": args.budget, "mode": args.mode, "residual": args.residual, "sets": {}}
    for name in args.sets:
        models = sorted(str(p) for p in (Path(args.devsets) / name).glob("*.npz"))
        models = in_residual(models, args.residual, out / f"devsets_{args.residual}" / name)
        suffix = "" if args.residual == "as-compiled" else f"_{args.residual}"
        rows_path = out / f"eval_devsets_{name}_{args.mode}_{args.budget:g}s{suffix}.jsonl"
        if not args.resume:
            rows_path.unlink(missing_ok=True)  # rows of an earlier run were made by earlier code
        rows = synthesize_many(models, rows_path, jobs=args.jobs, mode=args.mode, budget_s=args.budget)
        summary["sets"][name] = summarise(rows, args.budget)
    suffix = "" if args.residual == "as-compiled" else f"_{args.residual}"
    (out / f"eval_devsets{suffix}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"budget {args.budget:g} s, mode {args.mode}, residual {args.residual}")
    columns = ["set", "verified", *CERTIFICATES, "median s", "p95 s", "worst elapsed/budget"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in summary["sets"].items():
        n, c = s["models"], s["certificates"]
        print(
            f"| {name} | {s['verified']}/{n} ({100 * s['verified'] / n:.1f}%) | "
            + " | ".join(f"{c[k]} ({100 * c[k] / n:.0f}%)" for k in CERTIFICATES)
            + f" | {s['median_s']:.2f} | {s['p95_s']:.2f} | {s['worst_elapsed_over_budget']:.2f} |"
        )
    for name, s in summary["sets"].items():
        print(f"{name} misses: " + ("; ".join(f"{m} ({why})" for m, why in s["misses"].items()) or "none"))


if __name__ == "__main__":
    main()
