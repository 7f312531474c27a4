"""`raspsynth data generate` and `raspsynth data stats`."""

from __future__ import annotations

import argparse
import json


def cmd_generate(args: argparse.Namespace) -> int:
    from raspsynth.data.generate import generate
    from raspsynth.program.sampler import SamplerConfig

    sampler = SamplerConfig(
        min_ops=args.min_ops,
        max_ops=args.max_ops,
        vocab_size=tuple(args.vocab_size),
        max_seq_len=tuple(args.max_seq_len),
        coefficients=tuple(args.coefficients),
        p_string_tokens=args.string_tokens,
    )
    summary = generate(
        args.out,
        args.n,
        seed=args.seed,
        workers=args.workers,
        backend=args.backend,
        shard_size=args.shard_size,
        sampler=sampler,
        max_minutes=args.max_minutes,
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from raspsynth.data.stats import dataset_stats, format_stats

    stats = dataset_stats(args.dir)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="training-data pipeline").add_subparsers(
        dest="data_command", required=True
    )
    g = data.add_parser("generate", help="sample, deduplicate, compile and shard programs (resumable)")
    g.add_argument("--n", type=int, required=True, help="number of distinct programs")
    g.add_argument("--out", required=True, help="dataset directory (rerun to resume)")
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--backend", choices=("process", "ray"), default="process")
    g.add_argument("--shard-size", type=int, default=256)
    g.add_argument(
        "--max-minutes", type=float, default=None, help="stop at the first shard after this long (resumable)"
    )
    g.add_argument("--min-ops", type=int, default=1)
    g.add_argument("--max-ops", type=int, default=10)
    g.add_argument("--vocab-size", type=int, nargs=2, default=(5, 5), metavar=("LOW", "HIGH"))
    g.add_argument("--max-seq-len", type=int, nargs=2, default=(5, 5), metavar=("LOW", "HIGH"))
    g.add_argument(
        "--coefficients", type=int, nargs="+", default=(-2, -1, 1, 2), help="LinearSequenceMap coefficients"
    )
    g.add_argument(
        "--string-tokens",
        type=float,
        default=0.0,
        metavar="P",
        help="share of programs whose tokens are strings ('a', 'b', ... or short words)",
    )
    g.set_defaults(func=cmd_generate)
    s = data.add_parser("stats", help="distribution of lengths, op kinds, layers, d_model")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)
