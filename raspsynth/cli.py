"""`raspsynth ...` commands.

raspsynth demo [--dir examples]          synthesize the bundled example models
raspsynth synthesize MODEL [--mode hybrid] [--budget 60] [--seed 0] [--json] [--quiet]
                                         recover a verified program from weights
raspsynth report MODEL -o report.html    the same, as an HTML page of the circuit
raspsynth synthesize-many MODELS... --out results.jsonl [--jobs N] [--backend ray] [--meta-model gpu]
                                         a row per model, resumable
(MODEL: a raspsynth-model/1 .npz, or a TransformerLens .pt/.pth with a spec JSON)
raspsynth train --data DIR --out CKPT    train the meta-model (resumes when CKPT exists)
raspsynth export-checkpoint CKPT OUT     weights only, float16, for shipping
raspsynth info MODEL.npz                 print a model's spec and shapes
raspsynth run MODEL.npz "1 2 0" ...      print a model's outputs on inputs
raspsynth data generate|stats ...        training-data pipeline
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from raspsynth.errors import RaspsynthError


def _parse_tokens(text: str, vocab: tuple) -> list:
    by_text = {str(t): t for t in vocab}
    return [by_text.get(word, word) for word in text.split()]


def cmd_info(args: argparse.Namespace) -> int:
    from raspsynth.tracr_bridge import load_model

    model = load_model(args.model, args.spec)
    print(json.dumps(model.meta(), indent=2))
    print(f"d_model: {model.d_model}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from raspsynth.tracr_bridge import load_model

    model = load_model(args.model, args.spec)
    seqs = [_parse_tokens(text, model.spec.vocab) for text in args.inputs]
    for seq, out in zip(seqs, model.run(seqs)):
        print(f"{seq} -> {out}")
    return 0


def _stage_printer(quiet: bool):
    """Progress for people: each synthesis stage as it starts, on stderr."""
    if quiet:
        return None
    began = time.monotonic()

    def show(stage: str) -> None:
        print(f"raspsynth: [{time.monotonic() - began:6.2f} s] {stage}", file=sys.stderr, flush=True)

    return show


def _config(args: argparse.Namespace):
    """The search config `--config` and `--meta-model` name; None for the default."""
    from raspsynth.search.config import load_config, read_config

    config = read_config(args.config) if args.config else None
    if args.meta_model is not None:
        config = dataclasses.replace(config or load_config(), meta_model=args.meta_model)
    return config


def _synthesize(args: argparse.Namespace):
    from raspsynth.search import synthesize
    from raspsynth.tracr_bridge import load_model

    config = _config(args)
    progress = _stage_printer(args.quiet)
    if progress:
        progress(f"load {args.model}")
    model = load_model(args.model, args.spec)
    result = synthesize(
        model, mode=args.mode, budget_s=args.budget, seed=args.seed, config=config, progress=progress
    )
    if progress:
        status = f"verified ({result.certificate})" if result.verified else "not verified"
        progress(f"done: {status}")
    return result


def cmd_synthesize(args: argparse.Namespace) -> int:
    result = _synthesize(args)
    if args.json:
        payload = {
            "source": result.source,
            "verified": result.verified,
            "certificate": result.certificate,
            "agreement": result.agreement,
            "program_ir": result.ir.to_json() if result.ir is not None else None,
            "report": result.report,
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(result.source or "# no program found")
        print(result.summary())
    return 0 if result.verified else 1


def cmd_report(args: argparse.Namespace) -> int:
    result = _synthesize(args)
    out = Path(args.out)
    out.write_text(result.to_html(), encoding="utf-8")
    print(f"wrote {out}: {'verified (' + result.certificate + ')' if result.verified else 'NOT verified'}")
    return 0 if result.verified else 1


def cmd_synthesize_many(args: argparse.Namespace) -> int:
    from raspsynth.batch import summary_table, synthesize_many

    rows = synthesize_many(
        args.models,
        args.out,
        jobs=args.jobs,
        backend=args.backend,
        mode=args.mode,
        budget_s=args.budget,
        seed=args.seed,
        progress=not args.quiet,
        config=_config(args),
    )
    print(summary_table(rows))
    return 0 if all(row["verified"] for row in rows) else 1


def cmd_train(args: argparse.Namespace) -> int:
    from raspsynth.neural.meta_model import MetaModelConfig
    from raspsynth.neural.train import TrainConfig, train

    given = {k: v for k, v in vars(args).items() if v is not None}
    if "augment" in given:
        given["augment"] = tuple(given["augment"])
    model_fields = {f.name for f in dataclasses.fields(MetaModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    model = dataclasses.replace(MetaModelConfig(), **{k: v for k, v in given.items() if k in model_fields})
    config = dataclasses.replace(
        TrainConfig(), model=model, **{k: v for k, v in given.items() if k in train_fields}
    )
    if "val_every" in given:
        config = dataclasses.replace(config, checkpoint_every=config.val_every)
    figures = train(args.data, args.out, config)
    print(json.dumps({k: round(float(v), 5) for k, v in figures.items()}))
    return 0


def cmd_export_checkpoint(args: argparse.Namespace) -> int:
    from raspsynth.neural.train import export_checkpoint

    export_checkpoint(args.checkpoint, args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from raspsynth.search import synthesize
    from raspsynth.tracr_bridge import load_model

    files = sorted(Path(args.dir).glob("*.npz"))
    if not files:
        raise RaspsynthError(f"no .npz models in {args.dir}")
    failures = 0
    for path in files:
        model = load_model(str(path))
        reference = path.with_suffix(".json")
        print(f"== {path.name}: {model.num_layers} layers, d_model {model.d_model}")
        if reference.exists():
            spec = json.loads(reference.read_text())
            print(f"original:\n    {spec['program']}")
            outs = model.run([ex["input"] for ex in spec["examples"]])
            same = all(_close(out, ex["output"]) for out, ex in zip(outs, spec["examples"]))
            print(f"model reproduces the {len(outs)} reference outputs: {'yes' if same else 'NO'}")
        result = synthesize(model, budget_s=args.budget, seed=0)
        failures += not result.verified
        print("recovered (weights only, residual unlabelled):")
        body = [line for line in result.source.splitlines() if line and not line.startswith("from ")]
        print("\n".join(f"    {line}" for line in body) or "    (nothing)")
        print(result.summary().splitlines()[0])
        print()
    return 1 if failures else 0


def _close(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        abs(x - y) < 1e-5 if isinstance(x, float) else x == y for x, y in zip(a, b)
    )


MODEL_HELP = "a raspsynth-model/1 .npz, or a TransformerLens .pt/.pth checkpoint"


def _spec_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--spec", help="vocabularies of a TransformerLens checkpoint (JSON; default: beside it, .json)"
    )


def _synthesis_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("neural", "search", "hybrid"), default="hybrid")
    p.add_argument("--budget", type=float, default=60.0, help="time budget per model in seconds (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        help="search config file (default: $RASPSYNTH_CONFIG, else the tuned config shipped with raspsynth)",
    )
    p.add_argument(
        "--meta-model",
        help='meta-model checkpoint: "cpu" (the default), "gpu" (the larger one trained on a GPU) '
        "or a .pt file; overrides the config's",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raspsynth", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="synthesize the bundled example models")
    p.add_argument("--dir", default="examples")
    p.add_argument("--budget", type=float, default=60.0, help="seconds per model")
    p.set_defaults(func=cmd_demo)
    for name, func, text in (
        ("synthesize", cmd_synthesize, "recover a verified RASP program from a model file"),
        ("report", cmd_report, "recover a program and write an HTML report of its circuit"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("model", help=MODEL_HELP)
        _spec_flag(p)
        _synthesis_flags(p)
        _config_flags(p)
        if name == "synthesize":
            p.add_argument("--json", action="store_true", help="print source, verdict and report as JSON")
        else:
            p.add_argument(
                "-o", "--out", default="report.html", help="HTML file to write (default report.html)"
            )
        p.set_defaults(func=func)
    p = sub.add_parser("synthesize-many", help="synthesize many model files, one JSON row each (resumable)")
    p.add_argument(
        "models", nargs="+", help=MODEL_HELP + "; TransformerLens ones need their spec beside them"
    )
    p.add_argument("--out", required=True, help="results file (JSON lines); rows already there are skipped")
    p.add_argument("--jobs", type=int, default=1, help="models synthesized at once (default 1)")
    p.add_argument("--backend", choices=("process", "ray"), default="process")
    _synthesis_flags(p)
    _config_flags(p)
    p.set_defaults(func=cmd_synthesize_many)
    p = sub.add_parser("train", help="train the meta-model on a dataset from `raspsynth data generate`")
    p.add_argument("--data", required=True, help="dataset directory (train and val splits are read)")
    p.add_argument("--out", required=True, help="checkpoint path; an existing one is resumed")
    # Defaults (None here) are TrainConfig's and MetaModelConfig's.
    for flag, kind in (("--steps", int), ("--batch-size", int), ("--lr", float), ("--warmup", int)):
        p.add_argument(flag, type=kind, default=None)
    p.add_argument("--val-every", type=int, default=None, help="validate and checkpoint every N steps")
    p.add_argument("--max-train", type=int, default=None, help="programs read from the train split")
    p.add_argument(
        "--max-minutes", type=float, default=None, help="stop, validated and saved, after this long"
    )
    p.add_argument("--workers", type=int, default=None, help="processes reading the dataset's models")
    p.add_argument(
        "--augment",
        nargs="+",
        default=None,
        metavar="KIND",
        help="residual kinds (rotated, mixed, lossless, learned, ...) a share of train programs are read in",
    )
    p.add_argument("--augment-share", type=float, default=None, help="that share, in [0, 1]")
    for flag in ("--width", "--heads", "--layers", "--seed"):
        p.add_argument(flag, type=int, default=None)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("export-checkpoint", help="strip a training checkpoint to float16 weights")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.set_defaults(func=cmd_export_checkpoint)
    p = sub.add_parser("info", help="print a model's spec")
    p.add_argument("model", help=MODEL_HELP)
    _spec_flag(p)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("run", help="run a model on space-separated input sequences")
    p.add_argument("model", help=MODEL_HELP)
    _spec_flag(p)
    p.add_argument("inputs", nargs="+")
    p.set_defaults(func=cmd_run)
    try:
        from raspsynth.data.cli import add_data_commands
    except ImportError:  # pragma: no cover - data pipeline not installed
        pass
    else:
        add_data_commands(sub)
    return parser


EXIT_NOT_VERIFIED = 1  # the only meaning of exit status 1
EXIT_BAD_INPUT = 2  # a bad file, argument or path: one line on stderr, no traceback
EXIT_BROKEN_PIPE = 141  # stdout closed early (`raspsynth info m.npz | head`), as a shell reports SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Run a command. Exit status: 0 done (verified, for synthesis), 1 not
    verified, 2 bad input (argparse's usage errors too), 130 interrupted,
    141 stdout closed early."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RaspsynthError, OSError) as err:
        if isinstance(err, BrokenPipeError):
            return _broken_pipe()
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"raspsynth: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("raspsynth: interrupted", file=sys.stderr)
        return 130


def _broken_pipe() -> int:
    # Python would report the closed pipe again when flushing stdout at exit.
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
