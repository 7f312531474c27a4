"""What augmenting the meta-model's training data by residual basis would add.

The meta-model's input is the symbolic reading after basis recovery
(`neural.block_encoding`), so a training example read from a rotated,
mixed or compressed model should be the example read from the model as
compiled. This script measures that on train-split programs of the broad
training distribution (string tokens included; the test split and the dev
sets are never touched): each program's training example (`example_of`:
features and target tokens) is built from the compiled model and from the
model in each residual basis, and the two are compared.

Per basis it counts the programs whose example is identical (features and
targets), differs (both read, something changed), is lost (only the
compiled model reads) or gained, and, for learned compression, the programs
whose compression does not reach exact agreement (no model to read). It
writes augmentation_effect.json under --out (default experiments/results).

    python experiments/augmentation_effect.py [--n 100] [--seed 4242] [--kinds ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from program_sets import TRANSFORM_SEED, sampled_cases  # noqa: E402

from raspsynth.errors import CompressionFailed  # noqa: E402
from raspsynth.neural.block_encoding import FIELD_NAMES, columns  # noqa: E402
from raspsynth.neural.train import example_of  # noqa: E402
from raspsynth.program.sampler import SamplerConfig  # noqa: E402
from raspsynth.tracr_bridge.model import one_blas_thread  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# The committed checkpoint's training distribution (README, "Meta-model").
BROAD = SamplerConfig(
    max_ops=12,
    vocab_size=(3, 10),
    max_seq_len=(4, 10),
    coefficients=(-3, -2, -1, 1, 2, 3),
    p_string_tokens=0.2,
)
KINDS = ("permuted", "rotated", "mixed", "lossless", "learned")


def _differences(a, b) -> list[str]:
    """The feature fields (`block_encoding` layout) and targets that differ."""
    if a.features.shape != b.features.shape:
        return ["rows"]
    fields = [
        name
        for name in FIELD_NAMES
        if not np.array_equal(a.features[:, columns(name)], b.features[:, columns(name)])
    ]
    return fields + [
        name for name in ("kinds", "slots") if not np.array_equal(getattr(a, name), getattr(b, name))
    ]


def compare_case(job: tuple) -> dict:
    """The outcome of each residual basis on one program."""
    case, kinds = job
    with one_blas_thread():
        plain = example_of(case.program, case.model)
        row = {"name": case.name, "n_sops": case.n_sops, "plain_read": plain is not None}
        for kind in kinds:
            began = time.perf_counter()
            try:
                other = example_of(case.program, case.model.in_residual(kind, TRANSFORM_SEED))
            except CompressionFailed:
                row[kind] = "no exact compression"
                continue
            if plain is None:
                row[kind] = "gained" if other is not None else "unread in both"
            elif other is None:
                row[kind] = "lost"
            else:
                differences = _differences(plain, other)
                row[kind] = "differs" if differences else "identical"
                if differences:
                    row[f"{kind}_differences"] = differences
            row[f"{kind}_s"] = round(time.perf_counter() - began, 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    began = time.time()
    cases = sampled_cases("train", args.n, args.seed, "train", BROAD, transform="plain")
    jobs = [(case, tuple(args.kinds)) for case in cases]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        rows = list(tqdm(pool.map(compare_case, jobs), total=len(jobs), desc="programs"))
    summary = {kind: dict(Counter(row[kind] for row in rows)) for kind in args.kinds}
    fields = {
        kind: dict(Counter(f for row in rows for f in row.get(f"{kind}_differences", ())))
        for kind in args.kinds
    }
    result = {
        "n": args.n,
        "seed": args.seed,
        "plain_read": sum(row["plain_read"] for row in rows),
        "summary": summary,
        "fields_that_differ": fields,
        "rows": rows,
        "elapsed_s": round(time.time() - began, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "augmentation_effect.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.n} train-split programs, {result['plain_read']} read as compiled ({result['elapsed_s']} s)")
    print("| basis | " + " | ".join(sorted({k for s in summary.values() for k in s})) + " |")
    for kind, counts in summary.items():
        print(
            f"| {kind} | "
            + " | ".join(str(counts.get(k, 0)) for k in sorted({k for s in summary.values() for k in s}))
            + " |"
        )
    print("fields that differ (programs):", json.dumps(fields))


if __name__ == "__main__":
    main()
