"""`raspsynth data generate`: sample, deduplicate, compile and shard programs.

In: a target count, an output directory, a seed, a sampler config, a
backend (inline, process pool or Ray). Out: a dataset directory in the format
of `raspsynth.data.shards`, split train/val/test by canonical hash.

Determinism and resumption: shard k's candidates depend only on (seed, k)
and the sampler config, and candidates are deduplicated against earlier
shards in shard order, so the dataset is a function of its manifest alone.
A rerun after a kill reads the complete shards, rebuilds the set of hashes
seen, and continues at the first missing shard: it ends with the same files
as one uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from raspsynth.data.sampling import SamplingStats, sample_compiled
from raspsynth.data.shards import (
    DATA_FORMAT,
    DatasetError,
    complete_shards,
    pack_weights,
    read_index,
    shard_stem,
    write_shard,
)
from raspsynth.program.sampler import SamplerConfig
from raspsynth.tracr_bridge.model import one_blas_thread

DEFAULT_SPLITS = (("train", 0.9), ("val", 0.05), ("test", 0.05))
BACKENDS = ("process", "ray")


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """What a worker returns for one shard: candidates before deduplication."""

    records: list[dict[str, Any]]
    weights: bytes  # packed npz of every candidate's arrays
    stats: SamplingStats


def generate_shard(seed: int, index: int, size: int, sampler: SamplerConfig) -> ShardResult:
    """Draw `size` compiled, checked programs for shard `index` (pure function)."""
    rng = np.random.default_rng([seed, index])
    stats = SamplingStats()
    records, models = [], []
    seen: set[str] = set()
    with one_blas_thread():  # shards run side by side, one per core
        for _ in range(size):
            compiled = sample_compiled(rng, sampler, stats, seen)
            seen.add(compiled.hash)
            program, model = compiled.sample.program, compiled.model
            records.append(
                {
                    "key": f"p{len(records):04d}",
                    "hash": compiled.hash,
                    "program": program.to_json(),
                    "vocab": sorted(compiled.sample.vocab),
                    "max_seq_len": compiled.sample.max_seq_len,
                    "meta": model.meta(),
                    "num_sops": program.num_sops,
                    "kinds": sorted({_kind(op) for op in program.ops}),
                    "num_layers": model.num_layers,
                    "d_model": model.d_model,
                }
            )
            models.append(model)
    return ShardResult(records, pack_weights([r["key"] for r in records], models), stats)


def _kind(op: Any) -> str:
    return f"{op.encoding}_aggregate" if op.kind == "aggregate" else op.kind


def split_of(program_hash: str, splits: tuple[tuple[str, float], ...] = DEFAULT_SPLITS) -> str:
    """The split a program belongs to, a function of its canonical hash alone."""
    position = int(program_hash[:8], 16) / 16**8
    total = 0.0
    for name, fraction in splits:
        total += fraction
        if position < total:
            return name
    return splits[-1][0]


def _manifest(n: int, seed: int, shard_size: int, sampler: SamplerConfig) -> dict[str, Any]:
    return {
        "format": DATA_FORMAT,
        "n": n,
        "seed": seed,
        "shard_size": shard_size,
        "splits": [list(s) for s in DEFAULT_SPLITS],
        "sampler": dataclasses.asdict(sampler),
    }


def _check_manifest(out: Path, manifest: dict[str, Any]) -> None:
    path = out / "manifest.json"
    if path.exists():
        existing = json.loads(path.read_text())
        if isinstance(existing.get("sampler"), dict):
            # A field added to SamplerConfig since keeps the old distribution at
            # its default, so a dataset written before it still resumes.
            existing["sampler"] = {
                **json.loads(json.dumps(dataclasses.asdict(SamplerConfig()))),
                **existing["sampler"],
            }
        fixed = [k for k in manifest if k != "n" and json.loads(json.dumps(manifest[k])) != existing.get(k)]
        if fixed:
            raise DatasetError(
                f"{out} holds a dataset generated with different {', '.join(fixed)}; "
                "use another directory or the same settings to resume"
            )
    elif out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty and holds no raspsynth dataset")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def _inline_results(jobs: Iterator[tuple], workers: int) -> Iterator[ShardResult]:
    for job in jobs:
        yield generate_shard(*job)


def _pool_results(jobs: Iterator[tuple], workers: int) -> Iterator[ShardResult]:
    import multiprocessing

    # spawn, not fork: tracr imports JAX, whose threads do not survive a fork.
    pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        yield from _ordered(
            lambda job: pool.apply_async(generate_shard, job), lambda r: r.get(), jobs, workers
        )
    finally:
        pool.terminate()  # shards still in flight are not needed


def _ray_results(jobs: Iterator[tuple], workers: int) -> Iterator[ShardResult]:
    try:
        import ray
    except ImportError:
        raise DatasetError("the ray backend needs Ray: pip install 'raspsynth[ray]'") from None
    if not ray.is_initialized():
        # RAY_ADDRESS in the environment joins an existing cluster; else a local one.
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(generate_shard)
    yield from _ordered(lambda job: remote.remote(*job), ray.get, jobs, workers)


def _ordered(
    submit: Callable, result: Callable, jobs: Iterator[tuple], workers: int
) -> Iterator[ShardResult]:
    """Results in job order, keeping workers + 1 jobs in flight."""
    pending: deque = deque()
    for job in jobs:
        pending.append(submit(job))
        if len(pending) > workers:
            yield result(pending.popleft())
    while pending:
        yield result(pending.popleft())


def generate(
    out: str | Path,
    n: int,
    seed: int = 0,
    workers: int = 1,
    backend: str = "process",
    shard_size: int = 256,
    sampler: SamplerConfig = SamplerConfig(),
    progress: bool = True,
    max_shards: int | None = None,
    max_minutes: float | None = None,
) -> dict[str, Any]:
    """Generate (or resume) a dataset of `n` distinct programs in `out`.

    `max_shards` stops after writing that many new shards (used to test
    resumption); `max_minutes` stops at the first shard boundary after that
    much wall time, leaving a dataset that a rerun resumes. Returns a summary
    with the sampling statistics.
    """
    if not isinstance(sampler, SamplerConfig):
        raise DatasetError(f"sampler must be a SamplerConfig; got {type(sampler).__name__}")
    if n < 1 or shard_size < 1 or workers < 1:
        raise DatasetError("n, shard_size and workers must be positive")
    if backend not in BACKENDS:
        raise DatasetError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file; --out names the dataset directory")
    _check_manifest(out, _manifest(n, seed, shard_size, sampler))

    seen: set[str] = set()
    count = 0
    stats = SamplingStats()
    done = complete_shards(out)
    for index in done:
        for record in read_index(out, index):
            seen.add(record["hash"])
            count += 1
        stats.add(SamplingStats(**json.loads((out / f"{shard_stem(index)}.stats.json").read_text())))

    def jobs() -> Iterator[tuple]:
        index = len(done)
        while True:
            yield (seed, index, shard_size, sampler)
            index += 1

    run = _inline_results if workers == 1 else {"process": _pool_results, "ray": _ray_results}[backend]
    index, written = len(done), 0
    stop_at = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    bar = tqdm(total=n, initial=min(count, n), desc="programs", unit="prog", disable=not progress)
    results = run(jobs(), workers)
    try:
        while count < n and (max_shards is None or written < max_shards):
            if stop_at is not None and time.monotonic() > stop_at:
                break
            shard = next(results)
            records = []
            for record in shard.records:
                if record["hash"] in seen or count + len(records) >= n:
                    continue
                seen.add(record["hash"])
                records.append({**record, "split": split_of(record["hash"])})
            (out / f"{shard_stem(index)}.stats.json").write_text(json.dumps(dataclasses.asdict(shard.stats)))
            write_shard(out, index, records, shard.weights)
            stats.add(shard.stats)
            count += len(records)
            bar.update(len(records))
            index += 1
            written += 1
    finally:
        results.close()
        bar.close()
    return {
        "programs": count,
        "shards": index,
        "sampled": stats.sampled,
        "compile_failures": stats.compile_failures,
        "compile_failure_rate": stats.compile_failure_rate,
        "miscompiles": stats.miscompiles,
        "duplicates_skipped_in_shard": stats.duplicates,
    }
