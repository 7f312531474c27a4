"""Training the meta-model: `raspsynth train --data DIR --out ckpt.pt`.

In: a dataset directory written by `raspsynth data generate` (its train and
val splits; the test split is never read here) and a `TrainConfig`. Out: a
checkpoint (model config and weights, optimizer, schedule and step, so a
run resumes where it stopped), a CSV log of loss and validation accuracy,
and the best-validation weights beside it (`*.best.pt`; best by exact
sequences, then token accuracy). `export_checkpoint` strips a checkpoint to
half-precision weights for shipping.

AdamW with linear warmup then cosine decay, gradient clipping, validation
every `val_every` steps (teacher-forced token accuracy and whole-sequence
exact match), a tqdm progress bar. On CUDA it uses bf16 autocast; on the
CPU, float32. Under `torchrun` it runs DistributedDataParallel (NCCL on
CUDA, gloo on the CPU), each rank drawing its own batches; rank 0 logs and
writes checkpoints.

Every program is trained with its residual freshly permuted each time it is
drawn, so nothing can be learnt from the residual's order.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from raspsynth.data.shards import load_examples
from raspsynth.errors import RaspsynthError
from raspsynth.neural.meta_model import MetaModel, MetaModelConfig, collate
from raspsynth.neural.program_tokens import MAX_TOKENS, TokenError, to_tokens, token_ids
from raspsynth.neural.weight_encoding import encode_weights
from raspsynth.tracr_bridge.model import Model


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 4000
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    clip: float = 1.0
    val_every: int = 250
    checkpoint_every: int = 250
    max_train: int | None = None  # programs read from the train split (None: all)
    max_val: int = 256
    max_minutes: float | None = None  # stop (validated and saved) after this much wall time
    seed: int = 0
    model: MetaModelConfig = MetaModelConfig()


@dataclasses.dataclass(frozen=True)
class Example:
    model: Model
    tokens: np.ndarray  # int64 token ids, BOS ... EOS


def load_split(directory: str | Path, split: str, limit: int | None) -> list[Example]:
    ids = token_ids()
    examples = []
    for _, program, model in load_examples(directory, split):
        try:
            tokens = to_tokens(program)
        except TokenError:
            continue  # longer than the grammar takes
        if len(tokens) > MAX_TOKENS:
            continue
        examples.append(Example(model, np.array([ids[t] for t in tokens], dtype=np.int64)))
        if limit is not None and len(examples) >= limit:
            break
    return examples


def batch_of(examples: list[Example], rng: np.random.Generator, device):
    """Encoded weights (each residual freshly permuted) and padded token ids."""
    encoded = [encode_weights(e.model.permuted(int(rng.integers(2**31)))) for e in examples]
    features, pairs, mask = collate(encoded, device)
    length = max(len(e.tokens) for e in examples)
    tokens = np.zeros((len(examples), length), dtype=np.int64)
    for i, e in enumerate(examples):
        tokens[i, : len(e.tokens)] = e.tokens
    return features, pairs, mask, torch.from_numpy(tokens).to(device)


def sequence_loss(meta_model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean token cross-entropy, token accuracy, exact-sequence match) under teacher forcing."""
    features, pairs, mask, tokens = batch
    logits = meta_model(features, pairs, mask, tokens[:, :-1])
    target = tokens[:, 1:]
    real = target != 0
    loss = nn.functional.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=0)
    right = (logits.argmax(-1) == target) | ~real
    return loss, right[real].float().mean(), right.all(dim=1).float().mean()


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def load_meta_model(path: str | Path, device: str | torch.device = "cpu") -> MetaModel:
    """A trained meta-model from a checkpoint written by `train` or `export_checkpoint`."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        meta_model = MetaModel(MetaModelConfig(**state["model_config"]))
        meta_model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    except (OSError, KeyError, RuntimeError, TypeError) as err:
        raise RaspsynthError(f"{path}: not a raspsynth meta-model checkpoint ({err})") from None
    return meta_model.to(device).eval()


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> None:
    """Weights only, in float16 (half the size; decoding runs in float32), with
    the model config and the step and figures it was trained to."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
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
    train_set = load_split(data, "train", config.max_train)
    val_set = load_split(data, "val", config.max_val)
    if not train_set:
        raise RaspsynthError(f"no training programs under {data} (run `raspsynth data generate` first)")
    meta_model = MetaModel(config.model).to(device)
    optimizer = torch.optim.AdamW(meta_model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    out = Path(out)
    step, best = 0, (-1.0, -1.0)
    if out.exists():
        state = torch.load(out, map_location=device, weights_only=False)
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
        batch = batch_of([train_set[i] for i in picked], rng, device)
        with autocast:
            loss, _, _ = sequence_loss(wrapped, batch)
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
def evaluate_split(meta_model: MetaModel, examples: list[Example], device, batch_size: int = 64) -> dict:
    meta_model.eval()
    rng = np.random.default_rng(0)
    totals = np.zeros(3)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        loss, token_accuracy, exact = sequence_loss(meta_model, batch_of(chunk, rng, device))
        totals += np.array([loss.item(), token_accuracy.item(), exact.item()]) * len(chunk)
    loss, token_accuracy, exact = totals / max(1, len(examples))
    return {"val_loss": loss, "val_token_accuracy": token_accuracy, "val_exact": exact}


def _save(path: Path, meta_model: MetaModel, optimizer, step: int, best: tuple, config: TrainConfig) -> None:
    state = {
        "model": meta_model.state_dict(),
        "model_config": meta_model.config.to_json(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "best_val": list(best),
        "train_config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a killed run never leaves a torn checkpoint
