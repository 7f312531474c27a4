"""Batch synthesis for model zoos: `raspsynth synthesize-many`.

In: model files (raspsynth-model/1 `.npz`, or TransformerLens `.pt`/`.pth`
with their spec JSON beside them), a results path, a budget per model.
Out: one JSON line per model in the results file (model, status, verified,
certificate, agreement, elapsed_s, source, error) and the rows as a list.

- Resumable: models that already have a row are skipped. Each row is
  written whole, with one `write` followed by an fsync, so a killed run
  leaves complete rows only; a torn last line (a kill inside that write) is
  dropped when the file is next opened.
- Isolated: each model runs in a worker process. A Python exception is a row
  with status "error"; a worker that dies is a row with status "crashed";
  one that overruns its budget by more than `grace_s` is killed and gives a
  row with status "timeout". The run goes on with a fresh worker.
- Backends: "process" (local worker processes, `jobs` of them) or "ray"
  (tasks on a Ray cluster: RAY_ADDRESS joins one, else a local one starts),
  as `raspsynth data generate` does.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from raspsynth.errors import InputError, checked_budget

if TYPE_CHECKING:
    from raspsynth.search.config import SearchConfig

BACKENDS = ("process", "ray")
STATUSES = ("verified", "not verified", "error", "timeout", "crashed")


def synthesize_file(
    path: str, mode: str, budget_s: float, seed: int, config: SearchConfig | None = None
) -> dict[str, Any]:
    """One model's row: synthesize it (with `config`, None meaning
    `synthesize`'s default), or say why it could not be."""
    from raspsynth.search import synthesize

    began = time.monotonic()
    row: dict[str, Any] = {"model": path, "mode": mode, "budget_s": budget_s}
    try:
        result = synthesize(path, mode=mode, budget_s=budget_s, seed=seed, config=config)
    except Exception as err:  # any failure is this model's row, never the run's end
        return {**row, **_failed("error", f"{type(err).__name__}: {err}", time.monotonic() - began)}
    return {
        **row,
        "status": "verified" if result.verified else "not verified",
        "verified": result.verified,
        "certificate": result.certificate,
        "agreement": result.agreement,
        "elapsed_s": round(time.monotonic() - began, 3),
        "source": result.source,
        "error": None,
    }


def _failed(status: str, error: str, elapsed: float) -> dict[str, Any]:
    return {
        "status": status,
        "verified": False,
        "certificate": "none",
        "agreement": 0.0,
        "elapsed_s": round(elapsed, 3),
        "source": "",
        "error": error,
    }


def read_rows(out: Path) -> list[dict[str, Any]]:
    """The complete rows of a results file; a torn last line is cut off."""
    if not out.exists():
        return []
    data = out.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(out, "r+b") as f:
            f.truncate(len(complete))
    rows = []
    for number, line in enumerate(complete.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{out}: line {number} is not a results row; use another --out") from None
        if not isinstance(row, dict) or "model" not in row:
            raise InputError(f"{out}: line {number} is not a results row; use another --out")
        rows.append(row)
    return rows


def _append(out: Path, row: dict[str, Any]) -> None:
    with open(out, "ab") as f:
        f.write((json.dumps(row, default=str) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def synthesize_many(
    models: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    jobs: int = 1,
    backend: str = "process",
    mode: str = "hybrid",
    budget_s: float = 60.0,
    seed: int = 0,
    grace_s: float | None = None,
    progress: bool = True,
    worker: Callable[..., dict] = synthesize_file,
    config: SearchConfig | None = None,
) -> list[dict[str, Any]]:
    """Synthesize every model in `models` not yet in `out`; every row of
    `out`, old and new, in the order of `models`. `config` is each
    synthesis's search config (None: `synthesize`'s default).

    `grace_s` (default max(5 s, 25% of the budget)) is how long past its
    budget a model may run before its worker is killed; `worker` is the
    function run per model (a test seam; it must be importable by name).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"jobs must be a positive integer; got {jobs!r}")
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    budget_s = checked_budget(budget_s)
    from raspsynth.search.config import SearchConfig

    if config is not None and not isinstance(config, SearchConfig):
        raise InputError(f"config must be a SearchConfig or None; got {type(config).__name__}")
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; name a .jsonl file")
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(os.fspath(m) for m in models))
    done = {row["model"]: row for row in read_rows(out)}
    todo = [name for name in names if name not in done]
    grace = max(5.0, 0.25 * budget_s) if grace_s is None else grace_s
    bar = tqdm(
        total=len(names), initial=len(names) - len(todo), desc="models", unit="model", disable=not progress
    )
    run = _process_rows if backend == "process" else _ray_rows
    try:
        for row in run(todo, jobs, (mode, float(budget_s), seed, config), budget_s + grace, worker):
            _append(out, row)
            done[row["model"]] = row
            bar.update(1)
            bar.set_postfix_str(f"{row['model'][-30:]}: {row['status']}")
    finally:
        bar.close()
    return [done[name] for name in names if name in done]


# -- the process backend: worker processes, each killed and replaced on overrun
def _worker_loop(conn, worker: Callable) -> None:
    while True:
        job = conn.recv()
        if job is None:
            return
        path, args = job
        conn.send(worker(path, *args))


class _Slot:
    """One worker process and the model it is working on."""

    def __init__(self, context, worker: Callable) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_loop, args=(child, worker), daemon=True)
        self.process.start()
        child.close()
        self.job: str | None = None
        self.started = 0.0

    def give(self, path: str, args: tuple) -> None:
        self.conn.send((path, args))
        self.job, self.started = path, time.monotonic()

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _process_rows(todo: list[str], jobs: int, args: tuple, limit_s: float, worker: Callable):
    # spawn, not fork: tracr imports JAX, whose threads do not survive a fork.
    context = multiprocessing.get_context("spawn")
    pending = list(reversed(todo))
    slots = [_Slot(context, worker) for _ in range(min(jobs, len(todo)))]
    try:
        while pending or any(s.job for s in slots):
            for slot in slots:
                if slot.job is None and pending:
                    slot.give(pending.pop(), args)
            wait(
                [s.conn for s in slots if s.job] + [s.process.sentinel for s in slots if s.job], timeout=0.25
            )
            for index, slot in enumerate(slots):
                if slot.job is None:
                    continue
                elapsed = time.monotonic() - slot.started
                row = None
                if slot.conn.poll():
                    try:
                        row = slot.conn.recv()
                    except (EOFError, OSError):
                        row = {"model": slot.job, **_failed("crashed", "the worker process died", elapsed)}
                elif not slot.process.is_alive():
                    code = slot.process.exitcode
                    row = {
                        "model": slot.job,
                        **_failed("crashed", f"the worker process died (exit {code})", elapsed),
                    }
                elif elapsed > limit_s:
                    row = {
                        "model": slot.job,
                        **_failed(
                            "timeout", f"still running {elapsed:.1f} s after it started; killed", elapsed
                        ),
                    }
                if row is None:
                    continue
                if row["status"] in ("crashed", "timeout"):
                    row = {"mode": args[0], "budget_s": args[1], **row}
                    slot.stop(kill=True)
                    slots[index] = _Slot(context, worker)
                else:
                    slot.job = None
                yield row
    finally:
        for slot in slots:
            slot.stop(kill=slot.job is not None)


# -- the ray backend ---------------------------------------------------------
def _ray_rows(todo: list[str], jobs: int, args: tuple, limit_s: float, worker: Callable):
    try:
        import ray
    except ImportError:
        raise InputError("the ray backend needs Ray: pip install 'raspsynth[ray]'") from None
    if not ray.is_initialized():
        # RAY_ADDRESS in the environment joins an existing cluster; else a local one.
        ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(max_retries=0)(worker)
    pending = list(reversed(todo))
    running: dict[Any, tuple[str, float]] = {}
    while pending or running:
        while pending and len(running) < jobs:
            path = pending.pop()
            running[remote.remote(path, *args)] = (path, time.monotonic())
        ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
        for ref in ready:
            path, started = running.pop(ref)
            try:
                yield ray.get(ref)
            except Exception as err:  # the task's worker died, or Ray lost it
                elapsed = time.monotonic() - started
                yield {
                    "model": path,
                    "mode": args[0],
                    "budget_s": args[1],
                    **_failed("crashed", f"{type(err).__name__}: {err}", elapsed),
                }
        for ref, (path, started) in list(running.items()):
            elapsed = time.monotonic() - started
            if elapsed > limit_s:
                ray.cancel(ref, force=True)
                del running[ref]
                yield {
                    "model": path,
                    "mode": args[0],
                    "budget_s": args[1],
                    **_failed(
                        "timeout", f"still running {elapsed:.1f} s after it started; cancelled", elapsed
                    ),
                }


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of the rows and a line of totals."""
    if not rows:
        return "no models"
    width = min(60, max(len(r["model"]) for r in rows))
    lines = [f"{'model':<{width}}  {'status':<12}  {'certificate':<11}  {'agreement':>9}  {'time':>8}"]
    for r in rows:
        name = r["model"] if len(r["model"]) <= width else "…" + r["model"][-(width - 1) :]
        lines.append(
            f"{name:<{width}}  {r['status']:<12}  {r.get('certificate', 'none'):<11}  "
            f"{r.get('agreement', 0.0):>9.4f}  {r.get('elapsed_s', 0.0):>7.2f}s"
        )
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    times = [r.get("elapsed_s", 0.0) for r in rows]
    lines.append(
        f"{counts['verified']}/{len(rows)} verified ("
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n and s != "verified")
        + (")" if any(n for s, n in counts.items() if s != "verified") else "none failed)")
        + f"; median {statistics.median(times):.2f} s, max {max(times):.2f} s"
    )
    return "\n".join(lines)
