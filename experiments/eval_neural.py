"""Evaluate the meta-model alone (pure neural, no search) on the held-out test split.

For every program of the dataset's *test* split (split by canonical hash,
so disjoint from the training programs up to renaming and table-equal
functions), the model's residual is permuted (seed 13) and the meta-model's
beam search proposes its top-k sketches. Reported, for the top-1 and for the
best of the top-k, by program length:
- exact: the sketch, without holes, has the program's canonical form
  (`canonical_hash`: equal up to op names, order and table-equal functions);
- functional: the sketch, holes filled by their placeholders (the model's
  argmax, no search), compiles and verifies against the model on every
  probe input (`verify`).

    python experiments/eval_neural.py --data data/default [--checkpoint PATH] [--n 500] [--k 5]
    python experiments/eval_neural.py --quick     # no dataset needed: 20 freshly sampled test-split programs

Without --data the programs are drawn like eval_synthesis's (the default
distribution from seed 9001, kept when their canonical hash is in the test
split), so a fresh clone needs no generated dataset.

Writes experiments/results/eval_neural.json and eval_neural.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from program_sets import sampled_cases  # noqa: E402

from raspsynth.data.shards import load_examples  # noqa: E402
from raspsynth.neural import BEAM, TOP_K, default_checkpoint  # noqa: E402
from raspsynth.neural.decode import beam_search  # noqa: E402
from raspsynth.neural.train import load_meta_model  # noqa: E402
from raspsynth.program.canonical import canonical_hash  # noqa: E402
from raspsynth.search.verify import verify  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PERMUTATION_SEED = 13
SAMPLE_SEED = 9001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", help="dataset directory (its test split); default: sample test-split programs"
    )
    parser.add_argument("--checkpoint", default=str(default_checkpoint()))
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--k", type=int, default=TOP_K)
    parser.add_argument("--beam", type=int, default=BEAM)
    parser.add_argument("--out", default=str(RESULTS), help="directory for the results")
    parser.add_argument("--quick", action="store_true", help="20 programs")
    args = parser.parse_args()
    if args.quick:
        args.n = 20

    meta_model = load_meta_model(args.checkpoint)
    rows = []
    began = time.monotonic()
    if args.data:
        examples = load_examples(args.data, "test")
    else:
        cases = sampled_cases("test", args.n, SAMPLE_SEED, "test", transform="plain")
        examples = ((None, case.program, case.model) for case in cases)
    for _, program, model in tqdm(examples, total=args.n, desc="test split"):
        if len(rows) >= args.n:
            break
        vocab, max_seq_len = model.spec.vocab, model.spec.max_seq_len
        target = canonical_hash(program, vocab, max_seq_len)
        permuted = model.permuted(PERMUTATION_SEED)
        sketches = beam_search(meta_model, permuted, beam=args.beam, top_k=args.k)
        exact = [not s.holes and canonical_hash(s.program, vocab, max_seq_len) == target for s in sketches]
        functional = []
        for sketch in sketches:
            functional.append(verify(sketch.program, permuted).verified)
        rows.append(
            {
                "n_sops": program.num_sops,
                "top1_exact": bool(exact and exact[0]),
                "topk_exact": any(exact),
                "top1_functional": bool(functional and functional[0]),
                "topk_functional": any(functional),
            }
        )
    lengths = sorted({r["n_sops"] for r in rows})
    metrics = ("top1_exact", "topk_exact", "top1_functional", "topk_functional")
    by_length = {
        n: {
            m: sum(r[m] for r in rows if r["n_sops"] == n) / sum(r["n_sops"] == n for r in rows)
            for m in metrics
        }
        | {"programs": sum(r["n_sops"] == n for r in rows)}
        for n in lengths
    }
    overall = {m: sum(r[m] for r in rows) / len(rows) for m in metrics} | {"programs": len(rows)}
    report = {
        "config": vars(args) | {"permutation_seed": PERMUTATION_SEED},
        "overall": overall,
        "by_length": by_length,
        "wall_s": time.monotonic() - began,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_neural.json").write_text(json.dumps(report, indent=2))

    print(f"{len(rows)} test-split programs, top-{args.k} of beam {args.beam}, checkpoint {args.checkpoint}")
    print("| SOps | programs | top-1 exact | top-k exact | top-1 functional | top-k functional |")
    print("|---|---|---|---|---|---|")
    for n, s in list(by_length.items()) + [("all", overall)]:
        print(
            f"| {n} | {s['programs']} | {100 * s['top1_exact']:.1f}% | {100 * s['topk_exact']:.1f}% "
            f"| {100 * s['top1_functional']:.1f}% | {100 * s['topk_functional']:.1f}% |"
        )
    print(f"wall time {report['wall_s']:.0f} s")

    fig, ax = plt.subplots(figsize=(7, 4))
    for metric, style in zip(metrics, ("--", "-", "--", "-")):
        ax.plot(lengths, [100 * by_length[n][metric] for n in lengths], style, marker="o", label=metric)
    ax.set_xlabel("program length (SOps)")
    ax.set_ylabel("% of test-split programs")
    ax.set_title("Meta-model alone (no search), residual permuted")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "eval_neural.png", dpi=120)


if __name__ == "__main__":
    main()
