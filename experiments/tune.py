"""Tune the search's knobs with Optuna; the best go to the config file
`synthesize()` loads by default.

Objective: the hybrid's verified rate on a *tuning* set, under a time budget
per synthesis, plus 0.05 x the share of non-library functions printed as
readable expressions (the expression-grammar size trades readability for
time, and time alone would always turn it off), minus 0.01 x (mean seconds /
budget) to prefer the faster of equally good configs.

The tuning set is drawn from the *val* split by canonical hash (never the
test split, which compare.py reports on): default-distribution programs,
shifted-distribution programs, programs with human-style lambdas (all
permuted), and default programs with the residual rotated (unreadable
weights, where enumeration and the meta-model's knobs matter). They are
interleaved so that the running verified rate after k programs is
comparable between trials; a MedianPruner stops trials whose running rate
falls behind. The defaults are always trial 0, so the best config is never
worse than the defaults on the tuning set.

Storage is an SQLite file by default; any SQLAlchemy URL works (for example
postgresql://user@host/db), so many workers on many machines can share one
study: run this script on each with the same --storage and --study (Optuna's
own distributed mode). --workers N starts N local worker processes.

    python experiments/tune.py [--quick] [--trials 24] [--workers 2]
        [--storage sqlite:///experiments/results/tune.db] [--study raspsynth-search]
        [--out raspsynth/search/tuned_config.json] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from program_sets import SHIFTED, lambda_cases, sampled_cases  # noqa: E402

from raspsynth.search.config import (  # noqa: E402
    ABLATION_SWITCHES,
    STRATEGIES,
    TUNED_CONFIG,
    SearchConfig,
    save_config,
)

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_STORAGE = f"sqlite:///{RESULTS / 'tune.db'}"
TUNING_SEEDS = (7001, 7002, 7003, 7004)
TIME_WEIGHT = 0.01
READABILITY_WEIGHT = 0.05


def suggest(trial: optuna.Trial) -> SearchConfig:
    """The search space: every knob of SearchConfig except the ablation switches."""
    return SearchConfig(
        beam=trial.suggest_int("beam", 2, 16),
        top_k=trial.suggest_int("top_k", 1, 8),
        hole_threshold=trial.suggest_float("hole_threshold", 0.1, 0.9),
        max_edits=trial.suggest_int("max_edits", 1, 3),
        branching=trial.suggest_int("branching", 4, 24),
        screen_inputs=trial.suggest_int("screen_inputs", 100, 500, step=50),
        verify_screen_score=trial.suggest_float("verify_screen_score", 0.7, 1.0),
        enumeration_size=trial.suggest_int("enumeration_size", 2, 4),
        strategy=trial.suggest_categorical("strategy", STRATEGIES),
        first_share=trial.suggest_float("first_share", 0.2, 0.8),
        solver_timeout_ms=trial.suggest_int("solver_timeout_ms", 250, 4000, log=True),
        expression_size=trial.suggest_int("expression_size", 0, 9),
    )


# Not tuned: the ablation switches, and which checkpoint the meta-model is.
UNTUNED = (*ABLATION_SWITCHES, "meta_model")
TUNED_FIELDS = tuple(f.name for f in dataclasses.fields(SearchConfig) if f.name not in UNTUNED)
DEFAULT_PARAMS = {name: getattr(SearchConfig(), name) for name in TUNED_FIELDS}


def tuning_cases(n_default: int, n_shifted: int, n_rotated: int, n_lambdas: int) -> list:
    """The tuning set, interleaved: default, shifted, rotated and lambdas in turn."""
    groups = [
        sampled_cases("default", n_default, TUNING_SEEDS[0], "val"),
        sampled_cases("shifted", n_shifted, TUNING_SEEDS[1], "val", SHIFTED),
        sampled_cases("rotated", n_rotated, TUNING_SEEDS[2], "val", transform="rotated"),
        lambda_cases(n_lambdas, TUNING_SEEDS[3], "val"),
    ]
    out = []
    for i in range(max(map(len, groups))):
        out += [g[i] for g in groups if i < len(g)]
    return out


def objective_for(cases: list, budget: float):
    from raspsynth import synthesize

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial)
        verified, seconds, tables, readable = 0, 0.0, 0, 0
        for step, case in enumerate(cases):
            began = time.monotonic()
            result = synthesize(case.model, mode="hybrid", budget_s=budget, seed=0, config=config)
            seconds += time.monotonic() - began
            verified += result.verified
            if result.ir is not None:
                tables += sum(op.fn is not None and op.fn.name == "table" for op in result.ir.ops)
                readable += len(result.report["expressions"])
            trial.report(verified / (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        rate, mean_s = verified / len(cases), seconds / len(cases)
        readable_share = readable / tables if tables else 1.0
        trial.set_user_attr("verified_rate", rate)
        trial.set_user_attr("mean_s", mean_s)
        trial.set_user_attr("readable_share", readable_share)
        return rate + READABILITY_WEIGHT * readable_share - TIME_WEIGHT * mean_s / budget

    return objective


def _storage(url: str) -> optuna.storages.RDBStorage:
    # SQLite serialises writers; a long lock timeout keeps parallel workers from failing.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


def _study(args) -> optuna.Study:
    return optuna.create_study(
        study_name=args.study,
        storage=_storage(args.storage),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=len(args.cases) // 3),
        load_if_exists=True,
    )


def worker(args, trials: int, progress: bool) -> None:
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(args)
    study.optimize(objective_for(args.cases, args.budget), n_trials=trials, show_progress_bar=progress)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 trials on 8 programs, budget 3 s")
    parser.add_argument("--trials", type=int, default=24, help="trials in all, split over the workers")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="SQLAlchemy URL of the study's database")
    parser.add_argument("--study", default="raspsynth-search")
    parser.add_argument("--n-default", type=int, default=12)
    parser.add_argument("--n-shifted", type=int, default=6)
    parser.add_argument("--n-rotated", type=int, default=8)
    parser.add_argument("--n-lambdas", type=int, default=8)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per synthesis")
    parser.add_argument("--seed", type=int, default=0, help="the TPE sampler's seed")
    parser.add_argument("--out", default=str(TUNED_CONFIG), help="where the best config goes")
    parser.add_argument("--no-write", action="store_true", help="do not write the config file")
    parser.add_argument("--results", default=str(RESULTS), help="where tune.json goes")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.n_default, args.n_shifted, args.n_rotated, args.n_lambdas = 4, 2, 2, 2, 2
        args.budget = 3.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    began = time.monotonic()
    if args.storage.startswith("sqlite:///"):
        Path(args.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    args.cases = tuning_cases(args.n_default, args.n_shifted, args.n_rotated, args.n_lambdas)
    study = _study(args)
    if not study.trials:
        study.enqueue_trial(DEFAULT_PARAMS)
    workers = max(1, min(args.workers, args.trials))
    shares = [args.trials // workers + (i < args.trials % workers) for i in range(workers)]
    if workers == 1:
        worker(args, shares[0], progress=True)
    else:
        context = multiprocessing.get_context("spawn")  # tracr/JAX threads do not survive fork
        processes = [context.Process(target=worker, args=(args, n, i == 0)) for i, n in enumerate(shares)]
        for p in processes:
            p.start()
        for p in processes:
            p.join()
        if any(p.exitcode for p in processes):
            raise SystemExit("a tuning worker failed; see its traceback above")
    wall = time.monotonic() - began

    study = _study(args)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial
    config = SearchConfig(**best.params)
    default = next((t for t in done if t.params == DEFAULT_PARAMS), None)
    provenance = {
        "study": args.study,
        "trials": len(study.trials),
        "complete": len(done),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "best_trial": best.number,
        "objective": best.value,
        "verified_rate": best.user_attrs.get("verified_rate"),
        "mean_s": best.user_attrs.get("mean_s"),
        "readable_share": best.user_attrs.get("readable_share"),
        "default_trial": default.number if default else None,
        "default_verified_rate": default.user_attrs.get("verified_rate") if default else None,
        "default_mean_s": default.user_attrs.get("mean_s") if default else None,
        "default_readable_share": default.user_attrs.get("readable_share") if default else None,
        "tuning_set": (
            f"val split: {args.n_default} default, {args.n_shifted} shifted, {args.n_rotated} rotated, "
            f"{args.n_lambdas} lambdas"
        ),
        "budget_s": args.budget,
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if not args.no_write:
        save_config(config, args.out, provenance)
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            **t.user_attrs,
            "params": t.params,
        }
        for t in study.trials
    ]
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {k: v for k, v in vars(args).items() if k != "cases"},
        "best": provenance,
        "wall_s": wall,
    }
    (results / "tune.json").write_text(json.dumps(report | {"trials": rows}, indent=2, default=str))
    p = provenance
    print(f"{p['trials']} trials ({p['complete']} complete, {p['pruned']} pruned), wall {wall:.0f} s")
    print(f"best trial {best.number}: objective {best.value:.4f}, verified {p['verified_rate']}")
    print(
        f"defaults (trial {p['default_trial']}): "
        f"verified {p['default_verified_rate']}, mean {p['default_mean_s']} s"
    )
    print("changed from the defaults:", json.dumps(config.changed()))
    if not args.no_write:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
