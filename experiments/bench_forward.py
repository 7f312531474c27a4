"""Benchmark the hot path: the forward pass and verification on 10^5 probes.

For a small, a medium and a large tracr model (residual permuted, as
synthesis sees them), side by side in one run:
- `Model.output_codes` (the forward pass verification uses: sparse fused
  products, one BLAS thread, outputs decoded as arrays) in sequences/s;
- a plain numpy forward pass written here (dense per-head products, per
  sequence decoding into lists, numpy's default threads): what one writes
  without the bridge; the ratio is ours over it;
- `verify` of the model's own program on 10^5 random inputs, every probe run
  (`weights_first=False`, so the weight isomorphism does not end it early),
  compile included.

    python experiments/bench_forward.py [--probes 100000] [--repeats 3]

Writes experiments/results/bench_forward.json. The target (issue 18): a
model with d_model <= 64 at 100k sequences/s or more, and verification of
10^5 probes in at most 3 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from tracr.compiler import lib
from tracr.rasp import rasp

from raspsynth.search.verify import verify
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.model import Model
from raspsynth.tracr_bridge.rasp_conversion import from_rasp

RESULTS = Path(__file__).resolve().parent / "results"
FORWARD_TARGET, VERIFY_TARGET_S = 100_000.0, 3.0


def models() -> dict[str, tuple[object, frozenset, int]]:
    """name -> (tracr program, vocab, max_seq_len): three sizes of d_model."""
    previous = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1)
    shifted = rasp.categorical(rasp.Aggregate(previous, rasp.tokens, default=None))
    return {
        "small: histogram, vocab 3, length 10": (lib.make_hist(), frozenset(range(3)), 10),
        "medium: previous-token sum, vocab 5, length 10": (
            rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, shifted)),
            frozenset(range(5)),
            10,
        ),
        "large: sort, vocab 10, length 10": (
            lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=10, min_key=1),
            frozenset(range(10)),
            10,
        ),
    }


def random_inputs(model: Model, n: int, seed: int = 0) -> list[list]:
    rng = np.random.default_rng(seed)
    vocab = list(model.spec.vocab)
    lengths = rng.integers(1, model.spec.max_seq_len + 1, size=n)
    return [[vocab[i] for i in rng.integers(len(vocab), size=int(k))] for k in lengths]


def plain_forward(model: Model, seqs: list[list]) -> list[list]:
    """A plain numpy forward pass: per-head 3-D products over the dense
    weights, argmax decoded sequence by sequence into lists."""
    index = {t: i for i, t in enumerate(model.spec.input_vocab)}
    bos, pad = index[model.spec.bos], index[model.spec.pad]
    out = []
    for start in range(0, len(seqs), 4096):
        chunk = seqs[start : start + 4096]
        width = 1 + max(len(s) for s in chunk)
        ids = np.full((len(chunk), width), pad)
        lengths = np.array([1 + len(s) for s in chunk])
        for row, seq in enumerate(chunk):
            ids[row, : 1 + len(seq)] = [bos] + [index[t] for t in seq]
        x = model.token_embed[ids] + model.pos_embed[:width][None]
        mask = (np.arange(width)[None, :] < lengths[:, None])[:, None, :]
        for layer in model.layers:
            attn = np.zeros_like(x)
            for head in layer.heads:
                if head.query_w.shape[1] == 0:
                    continue
                q, k, v = x @ head.query_w, x @ head.key_w, x @ head.value_w
                logits = np.einsum("btk,bsk->bts", q, k) / np.sqrt(q.shape[-1])
                logits = np.where(mask, logits, -1e30)
                weights = np.exp(logits - logits.max(-1, keepdims=True))
                weights /= weights.sum(-1, keepdims=True)
                attn += np.einsum("bts,bsk->btk", weights, v) @ head.output_w
            x = x + attn
            x = x + np.maximum(x @ layer.mlp_in_w, 0) @ layer.mlp_out_w
        logits = x[:, 1:] @ model.unembed
        values = model.spec.output_values
        for row, n in zip(logits, lengths - 1):
            out.append(row[:n, 0].tolist() if values is None else [values[i] for i in row[:n].argmax(-1)])
    return out


def best_of(repeats: int, f, *args, **kwargs) -> float:
    """The shortest of `repeats` timings of f(*args, **kwargs), in seconds."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        f(*args, **kwargs)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_forward.json")
    args = parser.parse_args()

    rows = []
    for name, (program, vocab, max_seq_len) in models().items():
        model = compile_program(program, vocab, max_seq_len).permuted(seed=1)
        ir = from_rasp(program, vocab, max_seq_len)
        seqs = random_inputs(model, args.probes)
        model.output_codes(seqs[:100])  # warm caches (compact layers, logit scale)
        ours = best_of(args.repeats, model.output_codes, seqs, mark_undefined=True)
        plain = best_of(1, plain_forward, model, seqs)
        verify(ir, model, seqs[:100], weights_first=False)  # tracr's one-off import, not verification
        began = time.perf_counter()
        verification = verify(ir, model, seqs, weights_first=False)
        verify_s = time.perf_counter() - began
        assert verification.verified and verification.complete, f"{name}: {verification}"
        row = {
            "model": name,
            "d_model": model.d_model,
            "layers": model.num_layers,
            "probes": len(seqs),
            "forward_seq_per_s": len(seqs) / ours,
            "plain_numpy_seq_per_s": len(seqs) / plain,
            "ratio_to_plain": plain / ours,
            "verify_s": verify_s,
        }
        rows.append(row)
        print(
            f"{name}: d_model {row['d_model']}, {row['layers']} layers | forward "
            f"{row['forward_seq_per_s']:,.0f} seq/s vs plain numpy {row['plain_numpy_seq_per_s']:,.0f} "
            f"({row['ratio_to_plain']:.1f}x) | verify {len(seqs):,} probes: {verify_s:.2f} s"
        )
    small = [r for r in rows if r["d_model"] <= 64]
    print(
        f"targets: d_model <= 64 forward >= {FORWARD_TARGET:,.0f} seq/s: "
        f"{all(r['forward_seq_per_s'] >= FORWARD_TARGET for r in small)}; verify 10^5 probes <= "
        f"{VERIFY_TARGET_S} s: {all(r['verify_s'] <= VERIFY_TARGET_S for r in small)}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    machine = platform.processor() or platform.machine()
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
