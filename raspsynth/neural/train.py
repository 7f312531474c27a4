"""Training the meta-model: `raspsynth train --data DIR --out ckpt.pt`.

In: a dataset directory written by `raspsynth data generate` (its train and
val splits; the test split is never read here) and a `TrainConfig`. Out: a
checkpoint (model config and weights, optimizer, schedule and step, so a
run resumes where it stopped), a CSV log of loss and validation accuracy,
and the best-validation weights beside it (`*.best.pt`; best by exact
programs, then token accuracy). `export_checkpoint` strips a checkpoint to
half-precision weights for shipping.

Each program's model is read once (`encode_blocks`, about 30 ms) and its
target tokens aligned to the reading (`targets`); the encoded split is
cached under `DIR/cache/`, so later runs start at once. Programs whose
reading fails or does not align are skipped and counted.

AdamW with linear warmup then cosine decay, gradient clipping, validation
every `val_every` steps (teacher-forced token accuracy and whole-program
exact match), a tqdm progress bar. On CUDA it uses bf16 autocast; on the
CPU, float32. Under `torchrun` it runs DistributedDataParallel (NCCL on
CUDA, gloo on the CPU), each rank drawing its own batches; rank 0 logs and
writes checkpoints.

No residual permutation is needed during training: the reading does not
depend on the residual's order (tests check this on permuted models), nor
on a rotation or mixing. A compressed residual is another matter: basis
recovery there can read a model otherwise, or not at all
(`experiments/augmentation_effect.py`). `augment` names residual kinds
(`Model.in_residual`) in which a share `augment_share` of the train
split's models are read instead, each program's kind and seed a function of
its canonical hash; where that reading fails (or a learned compression does
not reach exact agreement) the program is read as compiled.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import multiprocessing
import os
import pickle
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from raspsynth.data.shards import DatasetError, complete_shards, load_shard
from raspsynth.errors import CompressionFailed, RaspsynthError
from raspsynth.neural.block_encoding import encode_blocks
from raspsynth.neural.meta_model import MAX_SLOTS, MetaModel, MetaModelConfig, collate
from raspsynth.neural.program_tokens import OP_KINDS, token_groups, token_ids
from raspsynth.neural.targets import reading_targets
from raspsynth.program.ir import SOURCES, Program
from raspsynth.tracr_bridge.model import RESIDUAL_KINDS, Model, one_blas_thread

ENCODING_VERSION = 4  # bump when the features or targets change: old caches are ignored
IGNORE = -100


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.01
    clip: float = 1.0
    val_every: int = 250
    checkpoint_every: int = 250
    max_train: int | None = None  # programs read from the train split (None: all)
    max_val: int = 512
    max_minutes: float | None = None  # stop (validated and saved) after this much wall time
    workers: int = 2  # processes reading the dataset's models
    augment: tuple[str, ...] = ()  # residual kinds some train programs are read in (module docstring)
    augment_share: float = 0.0
    seed: int = 0
    model: MetaModelConfig = MetaModelConfig()


@dataclasses.dataclass(frozen=True)
class Example:
    """One program: its reading's rows and, per row, the target kind and slot tokens."""

    features: np.ndarray  # [R, FEATURES] float16
    kinds: np.ndarray  # [R] int64 index into OP_KINDS; IGNORE on the source rows
    slots: np.ndarray  # [R, MAX_SLOTS] int64 token ids after the kind token; IGNORE as padding


def example_of(program: Program, model: Model) -> Example | None:
    """The training example of a compiled program; None when unreadable or unaligned."""
    encoded = encode_blocks(model)
    if encoded is None:
        return None
    tokens = reading_targets(program, encoded, model)
    if tokens is None:
        return None
    rows = encoded.features.shape[0]
    kinds = np.full(rows, IGNORE, dtype=np.int64)
    slots = np.full((rows, MAX_SLOTS), IGNORE, dtype=np.int64)
    ids = token_ids()
    for row, (kind, *rest) in enumerate(token_groups(tokens), start=len(SOURCES)):
        kinds[row] = OP_KINDS.index(kind.lower())
        slots[row, : len(rest)] = [ids[t] for t in rest]
    return Example(encoded.features.astype(np.float16), kinds, slots)


def augmented_residual(program_hash: str, augment: tuple[str, ...], share: float) -> tuple[str, int] | None:
    """The residual kind and seed a program is read in for training, or None
    (as compiled): a function of its canonical hash. The split uses the hash's
    first 8 hex digits (`split_of`); this uses the other 8, so which programs
    are augmented is independent of the split."""
    if not augment or int(program_hash[8:12], 16) / 16**4 >= share:
        return None
    return augment[int(program_hash[12:14], 16) % len(augment)], int(program_hash[14:16], 16)


def _augmented_example(program: Program, model: Model, residual: tuple[str, int]) -> Example | None:
    try:
        return example_of(program, model.in_residual(*residual))
    except CompressionFailed:
        return None


def _shard_examples(job: tuple) -> tuple[list[Example], int]:
    directory, index, split, augment, share = job
    examples, skipped = [], 0
    with one_blas_thread():  # shards are read side by side, one per core
        for record, program, model in load_shard(directory, index, split):
            residual = augmented_residual(record["hash"], augment, share)
            example = residual and _augmented_example(program, model, residual)
            example = example or example_of(program, model)
            if example is None:
                skipped += 1
            else:
                examples.append(example)
    return examples, skipped


def load_split(
    directory: str | Path,
    split: str,
    limit: int | None,
    workers: int = 1,
    quiet: bool = True,
    augment: tuple[str, ...] = (),
    augment_share: float = 0.0,
) -> list[Example]:
    """Up to `limit` examples of a split, read in shard order (cached), a
    share of them in the residual kinds `augment` names."""
    directory = Path(directory)
    if not (directory / "manifest.json").exists():
        raise DatasetError(f"{directory}: not a raspsynth dataset (run `raspsynth data generate` first)")
    unknown = set(augment) - set(RESIDUAL_KINDS)
    if unknown or not 0 <= augment_share <= 1:
        raise RaspsynthError(
            f"augment takes residual kinds among {', '.join(RESIDUAL_KINDS)} and a share in [0, 1]; "
            f"got {sorted(unknown) or list(augment)} and {augment_share}"
        )
    tag = f"-{'+'.join(augment)}-{augment_share:g}" if augment and augment_share else ""
    cache = directory / "cache" / f"blocks-v{ENCODING_VERSION}-{split}-{limit or 'all'}{tag}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    jobs = [(str(directory), index, split, augment, augment_share) for index in complete_shards(directory)]
    examples, skipped = [], 0
    context = multiprocessing.get_context("spawn")
    with tqdm(total=limit, desc=f"reading {split} models", disable=quiet) as bar:
        pool = context.Pool(workers) if workers > 1 else None
        results = pool.imap(_shard_examples, jobs) if pool else map(_shard_examples, jobs)
        for shard, shard_skipped in results:
            examples += shard
            skipped += shard_skipped
            bar.update(len(shard))
            bar.set_postfix(skipped=skipped)
            if limit is not None and len(examples) >= limit:
                break
        if pool:
            pool.terminate()
    examples = examples[:limit]
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(examples, protocol=5))
    tmp.replace(cache)  # atomic: concurrent ranks or a killed run never leave a torn cache
    return examples


def batch_of(examples: list[Example], device):
    """Padded features, mask, target kinds and target slot tokens."""
    features, mask = collate([e.features.astype(np.float32) for e in examples], device)
    rows = features.shape[1]
    kinds = np.full((len(examples), rows), IGNORE, dtype=np.int64)
    slots = np.full((len(examples), rows, MAX_SLOTS), IGNORE, dtype=np.int64)
    for i, e in enumerate(examples):
        kinds[i, : len(e.kinds)], slots[i, : len(e.kinds)] = e.kinds, e.slots
    return features, mask, torch.from_numpy(kinds).to(device), torch.from_numpy(slots).to(device)


def op_loss(meta_model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean cross-entropy per target token, token accuracy, exact-program match),
    the slot tokens read at each op's target kind."""
    features, mask, kinds, slots = batch
    kind_logits, slot_logits = meta_model(features, mask)
    b, r, k, s, v = slot_logits.shape
    at_kind = kinds.clamp(min=0)[:, :, None, None, None].expand(b, r, 1, s, v)
    slot_logits = slot_logits.gather(2, at_kind).squeeze(2)  # [B, R, S, V]
    kind_loss = nn.functional.cross_entropy(
        kind_logits.float().reshape(-1, k), kinds.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    slot_loss = nn.functional.cross_entropy(
        slot_logits.float().reshape(-1, v), slots.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    target = torch.cat([kinds.reshape(-1), slots.reshape(-1)])
    real = target != IGNORE
    loss = (kind_loss + slot_loss) / real.sum().clamp(min=1)
    right = torch.cat([kind_logits.argmax(-1).reshape(-1), slot_logits.argmax(-1).reshape(-1)]) == target
    right = right | ~real
    per_program = torch.cat([right[: b * r].reshape(b, r), right[b * r :].reshape(b, r * s)], dim=1)
    return loss, right[real].float().mean(), per_program.all(dim=1).float().mean()


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# A checkpoint with its optimizer state is a few MB on the CPU and tens of MB
# at GPU scale; a file far past that is no checkpoint, and torch would read it
# into memory whole before saying so.
MAX_CHECKPOINT_BYTES = 512 * 2**20


def load_meta_model(path: str | Path, device: str | torch.device = "cpu") -> MetaModel:
    """A trained meta-model from a checkpoint written by `train` or
    `export_checkpoint`. Read as tensors and plain data only (no pickled code
    runs); RaspsynthError for anything else, a corrupt file included."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise RaspsynthError(f"{path}: not a raspsynth meta-model checkpoint ({err})") from None
    if size > MAX_CHECKPOINT_BYTES:
        raise RaspsynthError(
            f"{path}: {size} bytes, more than a meta-model checkpoint can be ({MAX_CHECKPOINT_BYTES})"
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        meta_model = MetaModel(MetaModelConfig(**state["model_config"]))
        meta_model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    except Exception as err:  # torch raises many kinds on corrupt input
        raise RaspsynthError(
            f"{path}: not a raspsynth meta-model checkpoint ({type(err).__name__}: {err})"
        ) from None
    return meta_model.to(device).eval()


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> None:
    """Weights only, in float16 (half the size; decoding runs in float32), with
    the model config and the step and figures it was trained to."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    slim = {
        "model": {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()},
        "model_config": state["model_config"],
        "step": state["step"],
        "train_config": state["train_config"],
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, out)


def train(
    data: str | Path, out: str | Path, config: TrainConfig = TrainConfig(), quiet: bool = False
) -> dict:
    """Train (or resume, when `out` exists) and return the final validation figures."""
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    device = torch.device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    )
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, rank])
    quiet_data = quiet or rank != 0
    train_set = load_split(
        data, "train", config.max_train, config.workers, quiet_data, config.augment, config.augment_share
    )
    val_set = load_split(data, "val", config.max_val, config.workers, quiet_data)
    if not train_set:
        raise RaspsynthError(f"no training programs under {data} (run `raspsynth data generate` first)")
    meta_model = MetaModel(config.model).to(device)
    optimizer = torch.optim.AdamW(meta_model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    out = Path(out)
    step, best = 0, (-1.0, -1.0)
    if out.exists():
        state = torch.load(out, map_location=device, weights_only=True)
        meta_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, best = state["step"], tuple(state["best_val"])
    wrapped = nn.parallel.DistributedDataParallel(meta_model) if distributed else meta_model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    log_path = out.with_suffix(".csv")
    if rank == 0 and not log_path.exists():
        log_path.write_text("step,lr,loss,val_loss,val_token_accuracy,val_exact,seconds\n")
    began = time.monotonic()
    figures = {}
    bar = tqdm(total=config.steps, initial=step, desc="train", disable=quiet or rank != 0)
    while step < config.steps:
        wrapped.train()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        picked = rng.choice(len(train_set), size=min(config.batch_size, len(train_set)), replace=False)
        batch = batch_of([train_set[i] for i in picked], device)
        with autocast:
            loss, _, _ = op_loss(wrapped, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(wrapped.parameters(), config.clip)
        optimizer.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        out_of_time = config.max_minutes is not None and time.monotonic() - began > 60 * config.max_minutes
        if distributed:  # every rank stops together
            flag = torch.tensor([float(out_of_time)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        last = step == config.steps or out_of_time
        if rank == 0 and (step % config.val_every == 0 or last):
            figures = evaluate_split(meta_model, val_set or train_set[: config.max_val], device)
            with log_path.open("a", newline="") as f:
                row = [step, f"{learning_rate(step - 1, config):.6g}", f"{loss.item():.5f}"]
                row += [f"{v:.5f}" for v in figures.values()] + [f"{time.monotonic() - began:.1f}"]
                csv.writer(f).writerow(row)
            score = (figures["val_exact"], figures["val_token_accuracy"])
            if score > best:
                best = score
                _save(out.with_suffix(".best.pt"), meta_model, optimizer, step, best, config)
        if rank == 0 and (step % config.checkpoint_every == 0 or last):
            _save(out, meta_model, optimizer, step, best, config)
        if out_of_time:
            break
    bar.close()
    if distributed:
        dist.destroy_process_group()
    return figures


@torch.no_grad()
def evaluate_split(meta_model: MetaModel, examples: list[Example], device, batch_size: int = 128) -> dict:
    meta_model.eval()
    totals = np.zeros(3)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        loss, token_accuracy, exact = op_loss(meta_model, batch_of(chunk, device))
        totals += np.array([loss.item(), token_accuracy.item(), exact.item()]) * len(chunk)
    loss, token_accuracy, exact = totals / max(1, len(examples))
    return {"val_loss": loss, "val_token_accuracy": token_accuracy, "val_exact": exact}


def _save(path: Path, meta_model: MetaModel, optimizer, step: int, best: tuple, config: TrainConfig) -> None:
    state = {
        "model": meta_model.state_dict(),
        "model_config": meta_model.config.to_json(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "best_val": [float(v) for v in best],  # plain floats: read back with weights_only
        "train_config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a killed run never leaves a torn checkpoint
