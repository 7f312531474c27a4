"""Fuzz `load_model` with corrupted model files and print the outcome table.

Writes N mutants (default 1,200) of the example models in ../shared/examples
to a temporary folder, every damage class of
`raspsynth.tracr_bridge.file_mutants` in turn, and loads each in a worker
process (memory capped at 4 GiB, 10 s per file). Outcomes:
- `ModelFormatError`: refused with the named error;
- `loaded`: a model that runs, with finite logits, on one input per token;
- anything else: another exception, a hang (timeout), a crash, or a loaded
  model that cannot run. The target is none of these.
It also reports the largest memory a load allocated (tracemalloc peak) as a
multiple of the file's size.

    python experiments/fuzz_interchange.py [--mutants 1200] [--seed 0]

Writes experiments/results/fuzz_interchange.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "experiments" / "results"
TIMEOUT_S = 10.0
MEMORY_CAP = 4 << 30


def _cap_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def load_outcome(path: str) -> tuple[str, int]:
    """(outcome, peak bytes allocated by the load) for one file."""
    import tracemalloc

    from raspsynth import load_model
    from raspsynth.errors import ModelFormatError

    tracemalloc.start()
    try:
        model = load_model(path)
    except ModelFormatError:
        return "ModelFormatError", tracemalloc.get_traced_memory()[1]
    except Exception as err:  # what the fuzz is for: anything else is a finding
        return f"other: {type(err).__name__}", tracemalloc.get_traced_memory()[1]
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    try:
        logits = model.logits([[token] for token in model.spec.vocab])
        finite = all(np.all(np.isfinite(row)) for row in logits)
        model.run([[token] for token in model.spec.vocab], mark_undefined=True)
    except Exception as err:
        return f"loaded, cannot run: {type(err).__name__}", peak
    return ("loaded" if finite else "loaded, non-finite outputs"), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutants", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", default=str(REPO.parent / "shared" / "examples"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    from raspsynth.tracr_bridge.file_mutants import KINDS, write_mutant

    sources = sorted(Path(args.examples).glob("*.npz"))
    rng = np.random.default_rng(args.seed)
    context = multiprocessing.get_context("spawn")

    def new_pool():
        return concurrent.futures.ProcessPoolExecutor(1, mp_context=context, initializer=_cap_memory)

    table: dict[str, Counter] = defaultdict(Counter)
    worst_ratio, worst_peak, slowest = 0.0, 0, 0.0
    pool = new_pool()
    with tempfile.TemporaryDirectory() as folder:
        for i in tqdm(range(args.mutants), desc="mutants"):
            kind = KINDS[i % len(KINDS)]
            source = sources[(i // len(KINDS)) % len(sources)]
            path = write_mutant(kind, source, rng, Path(folder) / f"mutant_{i}.npz")
            size = path.stat().st_size if path.is_file() else 0
            began = time.monotonic()
            future = pool.submit(load_outcome, str(path))
            try:
                outcome, peak = future.result(timeout=TIMEOUT_S)
            except concurrent.futures.TimeoutError:
                outcome, peak = "hang", 0
                for process in list(pool._processes.values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
            except concurrent.futures.process.BrokenProcessPool:
                outcome, peak = "crash", 0
                pool = new_pool()
            slowest = max(slowest, time.monotonic() - began)
            table[kind][outcome] += 1
            if size:
                worst_ratio = max(worst_ratio, peak / size)
            worst_peak = max(worst_peak, peak)
            if path.is_file():
                path.unlink()
    pool.shutdown()

    totals = Counter()
    for counts in table.values():
        totals.update(counts)
    outcomes = sorted(totals, key=lambda o: (o != "ModelFormatError", o != "loaded", o))
    width = max(len(k) for k in table)
    print(f"{'damage':<{width}}  " + "  ".join(outcomes))
    for kind in KINDS:
        print(f"{kind:<{width}}  " + "  ".join(f"{table[kind][o]:>{len(o)}}" for o in outcomes))
    print(f"{'total':<{width}}  " + "  ".join(f"{totals[o]:>{len(o)}}" for o in outcomes))
    bad = sum(n for o, n in totals.items() if o not in ("ModelFormatError", "loaded"))
    print(
        f"{args.mutants} mutants: {totals['ModelFormatError']} ModelFormatError, {totals['loaded']} loaded, "
        f"{bad} other; slowest load {slowest:.2f} s; largest load allocation {worst_peak / 1e6:.1f} MB, "
        f"{worst_ratio:.0f}x the file's size"
    )
    result = {
        "mutants": args.mutants,
        "seed": args.seed,
        "table": {kind: dict(table[kind]) for kind in KINDS},
        "totals": dict(totals),
        "other": bad,
        "slowest_load_s": slowest,
        "largest_allocation_bytes": worst_peak,
        "largest_allocation_over_file_size": worst_ratio,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "fuzz_interchange.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
