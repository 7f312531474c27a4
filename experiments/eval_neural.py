"""Evaluate the meta-model alone (pure neural, no search) on several sets, by program length.

Sets:
- test: test-split programs of the default distribution (split by canonical
  hash, so disjoint from every training split up to renaming and
  table-equal functions), residual permuted;
- rotated: other test-split programs, residual randomly rotated (read
  through basis recovery, `symbolic/basis.py`);
- lossless: other test-split programs, residual lossless-compressed (the
  visited states' span, rotated): basis recovery there sees only the values
  the model visits, so the reading can differ from the compiled model's;
- strings: test-split programs whose tokens are strings (the sampler's
  `p_string_tokens` = 1), residual permuted;
- peer, interpbench: the development sets no one here wrote
  (../shared/devsets/), as compiled. Measured only: nothing is trained,
  tuned or selected on them.

For every model the meta-model's beam search proposes its top-k sketches
(`decode.beam_search`: table tokens filled from the weights' reading, no
search, no repair). Reported, for the top-1 and for the best of the top-k:
- exact (sampled sets only): the sketch, without holes, has the program's
  canonical form (`canonical_hash`);
- functional: the sketch compiles and verifies against the model on every
  probe input (`verify`), holes keeping their placeholders.

    python experiments/eval_neural.py [--sets test rotated lossless strings ...] [--n 200] [--k 5]
    python experiments/eval_neural.py --quick     # 20 test-split programs
    python experiments/eval_neural.py --checkpoint gpu   # the GPU-trained checkpoint

Writes experiments/results/eval_neural.json and eval_neural.png (for another
checkpoint than the default: eval_neural_NAME.json and .png).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from program_sets import DEFAULT, Case, devset_cases, sampled_cases  # noqa: E402

from raspsynth.neural import BEAM, CHECKPOINTS, DEFAULT_META_MODEL, TOP_K, checkpoint_path  # noqa: E402
from raspsynth.neural.decode import beam_search  # noqa: E402
from raspsynth.neural.train import load_meta_model  # noqa: E402
from raspsynth.program.canonical import canonical_hash  # noqa: E402
from raspsynth.search.verify import verify  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_SEED = 9001
ROTATED_SEED = 9002
LOSSLESS_SEED = 9004
STRINGS_SEED = 9005
SETS = ("test", "rotated", "lossless", "strings", "peer", "interpbench")
METRICS = ("top1_exact", "topk_exact", "top1_functional", "topk_functional")


def cases_of(set_name: str, n: int) -> list[Case]:
    if set_name == "test":
        return sampled_cases("test", n, SAMPLE_SEED, "test", transform="permuted")
    if set_name == "rotated":
        return sampled_cases("rotated", n, ROTATED_SEED, "test", transform="rotated")
    if set_name == "lossless":
        return sampled_cases("lossless", n, LOSSLESS_SEED, "test", transform="lossless")
    if set_name == "strings":
        strings = dataclasses.replace(DEFAULT, p_string_tokens=1.0)
        return sampled_cases("strings", n, STRINGS_SEED, "test", strings, transform="permuted")
    return [c for c in devset_cases(set_name, transform="plain") if c.name.startswith(f"{set_name}/")]


def evaluate_case(meta_model, case: Case, k: int, beam: int) -> dict:
    model, program = case.model, case.program
    sketches = beam_search(meta_model, model, beam=beam, top_k=k)
    row = {"set": case.set, "name": case.name, "n_sops": case.n_sops, "sketches": len(sketches)}
    if program is not None:
        vocab, max_seq_len = model.spec.vocab, model.spec.max_seq_len
        target = canonical_hash(program, vocab, max_seq_len)
        exact = [not s.holes and canonical_hash(s.program, vocab, max_seq_len) == target for s in sketches]
        row |= {"top1_exact": bool(exact and exact[0]), "topk_exact": any(exact)}
    top1 = bool(sketches) and verify(sketches[0].program, model).verified
    topk = top1 or any(verify(sketch.program, model).verified for sketch in sketches[1:])
    return row | {"top1_functional": top1, "topk_functional": topk}


def summarise(rows: list[dict]) -> dict:
    metrics = [m for m in METRICS if all(m in r for r in rows)]
    return {m: sum(r[m] for r in rows) / len(rows) for m in metrics} | {"programs": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument(
        "--checkpoint", default=DEFAULT_META_MODEL, help=f"{', '.join(CHECKPOINTS)} or a checkpoint file"
    )
    parser.add_argument("--n", type=int, default=200, help="programs per sampled set")
    parser.add_argument("--k", type=int, default=TOP_K)
    parser.add_argument("--beam", type=int, default=BEAM)
    parser.add_argument("--out", default=str(RESULTS), help="directory for the results")
    parser.add_argument("--quick", action="store_true", help="20 test-split programs")
    args = parser.parse_args()
    if args.quick:
        args.n, args.sets = 20, ["test"]

    meta_model = load_meta_model(checkpoint_path(args.checkpoint))
    default = args.checkpoint == DEFAULT_META_MODEL
    name = "eval_neural" if default else f"eval_neural_{Path(args.checkpoint).stem}"
    began = time.monotonic()
    rows = []
    for set_name in args.sets:
        cases = cases_of(set_name, args.n)
        rows += [evaluate_case(meta_model, c, args.k, args.beam) for c in tqdm(cases, desc=set_name)]
    report = {"config": vars(args), "sets": {}, "wall_s": 0.0, "rows": rows}
    print(f"top-{args.k} of beam {args.beam}, checkpoint {args.checkpoint}")
    for set_name in args.sets:
        subset = [r for r in rows if r["set"] == set_name]
        lengths = sorted({r["n_sops"] for r in subset})
        by_length = {n: summarise([r for r in subset if r["n_sops"] == n]) for n in lengths}
        overall = summarise(subset)
        report["sets"][set_name] = {"overall": overall, "by_length": by_length}
        print(f"\n{set_name}:")
        metrics = [m for m in METRICS if m in overall]
        print("| SOps | programs | " + " | ".join(metrics) + " |")
        print("|---" * (len(metrics) + 2) + "|")
        for n, s in list(by_length.items()) + [("all", overall)]:
            print(f"| {n} | {s['programs']} | " + " | ".join(f"{100 * s[m]:.1f}%" for m in metrics) + " |")
    report["wall_s"] = time.monotonic() - began
    # The first set's figures also at the top level, as before sets were added.
    report["overall"] = report["sets"][args.sets[0]]["overall"]
    print(f"wall time {report['wall_s']:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))

    fig, ax = plt.subplots(figsize=(7, 4))
    for set_name in args.sets:
        by_length = report["sets"][set_name]["by_length"]
        lengths = sorted(by_length)
        overall = report["sets"][set_name]["overall"]["top1_functional"]
        label = f"{set_name} ({100 * overall:.0f}%)"
        ax.plot(lengths, [100 * by_length[n]["top1_functional"] for n in lengths], marker="o", label=label)
    ax.set_xlabel("program length (SOps)")
    ax.set_ylabel("top-1 sketch verified (%)")
    ax.set_title(f"Meta-model alone (no search, no repair), checkpoint {args.checkpoint}")
    ax.set_ylim(0, 105)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
