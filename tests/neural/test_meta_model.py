"""The meta-model: token grammar, permutation invariance, valid decodes,
overfitting a tiny dataset, and DistributedDataParallel on two CPU processes."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from raspsynth import synthesize
from raspsynth.data.generate import generate
from raspsynth.neural.decode import beam_search
from raspsynth.neural.meta_model import MetaModel, MetaModelConfig, collate
from raspsynth.neural.program_tokens import Grammar, from_tokens, to_tokens, token_ids, vocabulary
from raspsynth.neural.train import (
    TrainConfig,
    batch_of,
    export_checkpoint,
    load_meta_model,
    load_split,
    train,
)
from raspsynth.neural.weight_encoding import encode_weights
from raspsynth.program.canonical import canonical_hash
from raspsynth.program.evaluate import evaluate
from raspsynth.program.sampler import SamplerConfig
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs
from tests.conftest import REPO
from tests.helpers import random_programs

TINY = MetaModelConfig(width=32, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0)


def test_tokens_round_trip_sampled_programs():
    for sample in random_programs(60, seed=8):
        decoded = from_tokens(to_tokens(sample.program))
        if not decoded.holes:  # tables and odd coefficients become holes
            assert canonical_hash(decoded.program, sample.vocab, sample.max_seq_len) == canonical_hash(
                sample.program, sample.vocab, sample.max_seq_len
            )


def test_logits_do_not_change_when_the_residual_is_permuted():
    torch.manual_seed(0)
    meta_model = MetaModel(MetaModelConfig()).eval()
    entry = lib_programs()["make_sort_freq"]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len)
    tokens = torch.tensor([[token_ids()[t] for t in ("BOS", "SELECTOR_WIDTH", "ENC_categorical", "REF_0")]])
    with torch.no_grad():
        reference = meta_model(*collate([encode_weights(model)]), tokens)
        for seed in (1, 2, 3):
            permuted = meta_model(*collate([encode_weights(model.permuted(seed))]), tokens)
            assert torch.allclose(reference, permuted, atol=1e-4)
    # ... and a batch padded to a larger model gives the same logits as alone.
    big = compile_program(lib_programs()["make_shuffle_dyck"].build(), {"(", ")"}, 5)
    with torch.no_grad():
        padded = meta_model(*collate([encode_weights(model), encode_weights(big)]), tokens.repeat(2, 1))
    assert torch.allclose(reference[0], padded[0], atol=1e-4)


def test_1000_grammar_masked_decodes_are_all_valid_programs():
    torch.manual_seed(1)
    meta_model = MetaModel(TINY).eval()
    model = compile_program(lib_programs()["make_hist"].build(), set(range(5)), 5)
    features, pairs, mask = collate([encode_weights(model)])
    ids, names = token_ids(), vocabulary()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        memory = meta_model.encode(features, pairs, mask).expand(1000, -1, -1)
        masks = mask.expand(1000, -1)
        grammars = [Grammar().push("BOS") for _ in range(1000)]
        sequences = [[ids["BOS"]] for _ in range(1000)]
        while not all(g.finished for g in grammars):
            logits = meta_model.decode(memory, masks, torch.tensor(sequences))[:, -1]
            for i, grammar in enumerate(grammars):
                if grammar.finished:
                    sequences[i].append(0)
                    continue
                allowed = [ids[t] for t in grammar.allowed()]
                p = torch.softmax(logits[i, allowed], 0).numpy().astype(np.float64)
                choice = allowed[rng.choice(len(allowed), p=p / p.sum())]
                grammars[i] = grammar.push(names[choice])
                sequences[i].append(choice)
    for grammar in grammars:
        decoded = grammar.program()  # raises ProgramError if invalid
        evaluate(decoded.program, [(0, 1, 2), (4,)])  # and it runs
    assert len({g.prefix for g in grammars}) > 500  # sampling really explored


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate(out, 60, seed=3, shard_size=30, workers=1, sampler=SamplerConfig(max_ops=3), progress=False)
    return out


def test_a_tiny_dataset_is_overfit(tiny_dataset, tmp_path, monkeypatch):
    examples = load_split(tiny_dataset, "train", 8)
    config = TrainConfig(steps=300, batch_size=8, lr=3e-3, warmup=20, val_every=300, max_train=8, model=TINY)
    train(tiny_dataset, tmp_path / "ckpt.pt", config, quiet=True)
    meta_model = load_meta_model(tmp_path / "ckpt.pt")
    rng = np.random.default_rng(5)
    with torch.no_grad():
        from raspsynth.neural.train import sequence_loss

        loss, accuracy, exact = sequence_loss(meta_model, batch_of(examples, rng, "cpu"))
    assert loss.item() < 0.05 and exact.item() == 1.0
    # Beam search recovers the training programs themselves (fresh permutation).
    for example in examples[:3]:
        best = beam_search(meta_model, example.model.permuted(9), beam=4, top_k=1)[0]
        assert [token_ids()[t] for t in best.tokens] == example.tokens.tolist()
    # The shipped form (float16 weights only) decodes the same.
    export_checkpoint(tmp_path / "ckpt.pt", tmp_path / "slim.pt")
    slim = load_meta_model(tmp_path / "slim.pt")
    assert (tmp_path / "slim.pt").stat().st_size < (tmp_path / "ckpt.pt").stat().st_size / 4
    for example in examples[:3]:
        best = beam_search(slim, example.model, beam=4, top_k=1)[0]
        assert [token_ids()[t] for t in best.tokens] == example.tokens.tolist()
    # synthesize(mode="neural") uses the checkpoint: the best sketch, verified, no search.
    pipeline = importlib.import_module("raspsynth.search.synthesize")
    monkeypatch.setattr(pipeline, "default_checkpoint", lambda: tmp_path / "slim.pt")
    result = synthesize(examples[0].model.permuted(4), mode="neural", budget_s=60)
    assert result.verified and {op["from"] for op in result.report["ops"]} == {"neural"}
    assert result.report["meta_model"] == "loaded slim.pt"
    # The CSV log has a header and a row per validation.
    assert (tmp_path / "ckpt.csv").read_text().splitlines()[0].startswith("step,lr,loss")


def test_training_resumes_from_its_checkpoint(tiny_dataset, tmp_path):
    config = TrainConfig(steps=20, batch_size=4, warmup=5, val_every=10, checkpoint_every=10, model=TINY)
    train(tiny_dataset, tmp_path / "ckpt.pt", config, quiet=True)
    longer = TrainConfig(steps=30, batch_size=4, warmup=5, val_every=10, checkpoint_every=10, model=TINY)
    train(tiny_dataset, tmp_path / "ckpt.pt", longer, quiet=True)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert state["step"] == 30
    steps = [line.split(",")[0] for line in (tmp_path / "ckpt.csv").read_text().splitlines()[1:]]
    assert steps == ["10", "20", "30"]  # resumed at 20, not restarted


def test_distributed_data_parallel_on_two_cpu_processes(tiny_dataset, tmp_path):
    script = (
        "import sys; from raspsynth.neural.train import TrainConfig, train;"
        "from raspsynth.neural.meta_model import MetaModelConfig;"
        "tiny = MetaModelConfig(width=32, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0);"
        "train(sys.argv[1], sys.argv[2], TrainConfig(steps=6, batch_size=4, warmup=2, val_every=3,"
        " checkpoint_every=3, model=tiny), quiet=True)"
    )
    (tmp_path / "run.py").write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            str(tmp_path / "run.py"),
            str(tiny_dataset),
            str(tmp_path / "ddp.pt"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(tmp_path / "ddp.pt", weights_only=False)
    assert state["step"] == 6
