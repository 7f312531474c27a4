"""`raspsynth ...` commands.

raspsynth demo [--dir examples]          run the bundled example models
raspsynth info MODEL.npz                 print a model's spec and shapes
raspsynth run MODEL.npz "1 2 0" ...      print a model's outputs on inputs
raspsynth data generate|stats ...        training-data pipeline
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from raspsynth.errors import RaspsynthError


def _parse_tokens(text: str, vocab: tuple) -> list:
    by_text = {str(t): t for t in vocab}
    return [by_text.get(word, word) for word in text.split()]


def cmd_info(args: argparse.Namespace) -> int:
    from raspsynth.tracr_bridge import load_model

    model = load_model(args.model)
    print(json.dumps(model.meta(), indent=2))
    print(f"d_model: {model.d_model}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from raspsynth.tracr_bridge import load_model

    model = load_model(args.model)
    seqs = [_parse_tokens(text, model.spec.vocab) for text in args.inputs]
    for seq, out in zip(seqs, model.run(seqs)):
        print(f"{seq} -> {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from raspsynth.tracr_bridge import load_model

    files = sorted(Path(args.dir).glob("*.npz"))
    if not files:
        raise RaspsynthError(f"no .npz models in {args.dir}")
    for path in files:
        model = load_model(str(path))
        reference = path.with_suffix(".json")
        print(f"== {path.name}: {model.num_layers} layers, d_model {model.d_model}")
        examples = []
        if reference.exists():
            spec = json.loads(reference.read_text())
            print(f"   original: {spec['program']}")
            examples = spec["examples"][-4:]
        seqs = [ex["input"] for ex in examples] or [list(model.spec.vocab)[: model.spec.max_seq_len]]
        for ex, out in zip(examples or [{}] * len(seqs), model.run(seqs)):
            shown = [round(v, 4) if isinstance(v, float) else v for v in out]
            check = (
                ""
                if "output" not in ex
                else ("  (matches reference)" if _close(out, ex["output"]) else "  (DIFFERS from reference)")
            )
            print(f"   {ex.get('input', seqs[0])} -> {shown}{check}")
    return 0


def _close(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        abs(x - y) < 1e-5 if isinstance(x, float) else x == y for x, y in zip(a, b)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raspsynth", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the bundled example models")
    p.add_argument("--dir", default="examples")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("info", help="print a model's spec")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("run", help="run a model on space-separated input sequences")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+")
    p.set_defaults(func=cmd_run)
    try:
        from raspsynth.data.cli import add_data_commands
    except ImportError:  # pragma: no cover - data pipeline not installed
        pass
    else:
        add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RaspsynthError, FileNotFoundError) as err:
        print(f"raspsynth: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
