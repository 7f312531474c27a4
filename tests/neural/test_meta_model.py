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
from tracr.rasp import rasp

from raspsynth import synthesize
from raspsynth.data.generate import generate
from raspsynth.errors import RaspsynthError
from raspsynth.neural import checkpoint_path, default_checkpoint
from raspsynth.neural.block_encoding import encode_blocks
from raspsynth.neural.decode import _log_probs, beam_search, ground_tables
from raspsynth.neural.meta_model import MetaModel, MetaModelConfig, collate
from raspsynth.neural.program_tokens import Grammar, from_tokens, to_tokens, token_ids
from raspsynth.neural.train import (
    IGNORE,
    TrainConfig,
    batch_of,
    example_of,
    export_checkpoint,
    load_meta_model,
    load_split,
    op_loss,
    train,
)
from raspsynth.program.canonical import canonical_hash
from raspsynth.program.evaluate import evaluate
from raspsynth.program.sampler import SamplerConfig
from raspsynth.search.config import ConfigError, SearchConfig
from raspsynth.search.verify import verify
from raspsynth.tracr_bridge import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.rasp_conversion import to_rasp
from tests.conftest import REPO
from tests.helpers import random_programs

TINY = MetaModelConfig(width=32, heads=2, layers=1, dropout=0.0)


@pytest.mark.parametrize("p_numerical_input_map", [0.0, 0.5])
def test_tokens_round_trip_sampled_programs(p_numerical_input_map):
    config = SamplerConfig(p_numerical_input_map=p_numerical_input_map)
    samples = random_programs(60, seed=8, config=config)
    numerical_input_maps = [
        op
        for sample in samples
        for op in sample.program.ops
        if op.kind == "map" and sample.program.encoding(op.inputs[0]) == "numerical"
    ]
    assert bool(numerical_input_maps) == bool(p_numerical_input_map)
    for sample in samples:
        decoded = from_tokens(to_tokens(sample.program))
        if not decoded.holes:  # tables and odd coefficients become holes
            assert canonical_hash(decoded.program, sample.vocab, sample.max_seq_len) == canonical_hash(
                sample.program, sample.vocab, sample.max_seq_len
            )


@pytest.mark.parametrize("change", ["permuted", "rotated", "mixed"])
def test_predictions_do_not_change_with_the_residual_basis(change):
    torch.manual_seed(0)
    meta_model = MetaModel(MetaModelConfig()).eval()
    entry = lib_programs()["make_sort_freq"]
    model = compile_program(entry.build(), entry.vocab, entry.max_seq_len)
    reference = encode_blocks(model)
    with torch.no_grad():
        kinds, slots = meta_model(*collate([reference]))
        for seed in (1, 2, 3):
            changed = encode_blocks(getattr(model, change)(seed))
            assert np.array_equal(changed.features, reference.features)
            other_kinds, other_slots = meta_model(*collate([changed]))
            assert torch.allclose(kinds, other_kinds, atol=1e-5) and torch.allclose(
                slots, other_slots, atol=1e-5
            )
        # ... and a shorter reading padded in a batch gives the same logits as alone.
        small = encode_blocks(compile_program(lib_programs()["make_hist"].build(), set(range(5)), 5))
        rows = small.features.shape[0]
        assert rows < reference.features.shape[0]
        alone_kinds, alone_slots = meta_model(*collate([small]))
        padded_kinds, padded_slots = meta_model(*collate([small, reference]))
        assert torch.allclose(alone_kinds[0], padded_kinds[0, :rows], atol=1e-5)
        assert torch.allclose(alone_slots[0], padded_slots[0, :rows], atol=1e-5)
    sketches = [beam_search(meta_model, m, beam=4, top_k=3) for m in (model, getattr(model, change)(7))]
    assert [s.tokens for s in sketches[0]] == [s.tokens for s in sketches[1]]


def test_the_evidence_path_alone_ranks_every_target_token_first():
    """With the network's own logits zeroed, each target token of programs
    compiled by tracr (aligned to their readings) has the highest logit of its
    slot (tied where several functions or comparisons fit alike)."""
    meta_model = MetaModel(TINY).eval()
    with torch.no_grad():
        for layer in (meta_model.kind_head, meta_model.slot_head[3]):
            layer.weight.zero_()
            layer.bias.zero_()
    examples = []
    for sample in random_programs(30, seed=5, config=SamplerConfig(p_custom_predicate=0.5)):
        model = compile_program(to_rasp(sample.program), sample.vocab, sample.max_seq_len)
        example = example_of(sample.program, model)
        if example is not None:
            examples.append(example)
    assert len(examples) >= 25
    features, mask, kinds, slots = batch_of(examples, "cpu")
    with torch.no_grad():
        kind_logits, slot_logits = meta_model(features, mask)
    b, r, k, s, v = slot_logits.shape
    at_kind = kinds.clamp(min=0)[:, :, None, None, None].expand(b, r, 1, s, v)
    slot_logits = slot_logits.gather(2, at_kind).squeeze(2)
    real = kinds != IGNORE
    assert (kind_logits.argmax(-1) == kinds)[real].all()
    targets = slots.clamp(min=0)
    target_logit = slot_logits.gather(-1, targets[..., None]).squeeze(-1)
    at_max = target_logit >= slot_logits.amax(-1)
    assert at_max[slots != IGNORE].all()
    predicates = {token_ids()[t] for t in token_ids() if t.startswith("PRED_") and t != "PRED_TABLE"}
    assert any(int(t) in predicates for t in slots[slots != IGNORE])  # library predicates were covered


def test_table_tokens_are_filled_from_the_weights_reading():
    """The reading's own tokens name a lambda the library lacks as FN_TABLE;
    grounding fills it with the weights' table, and the program then verifies
    against tracr's model where the placeholder does not."""
    program = rasp.numerical(rasp.Map(lambda x: 1 if (2 * x + 1) % 5 > 2 else 0, rasp.tokens))
    program = rasp.numerical(
        rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), program, default=0)
    )
    model = compile_program(program, {0, 1, 2, 3, 4}, 5)
    encoded = encode_blocks(model)
    reading = encoded.decompiled.program
    decoded = from_tokens(to_tokens(reading))
    assert decoded.holes  # the lambda is no library function
    assert not verify(decoded.program, model).verified
    grounded, holes, names = ground_tables(decoded, reading)
    assert not holes and set(names) == set(decoded.holes)
    assert verify(grounded, model).verified
    # An op written with other operands than the reading's keeps its hole.
    tokens = to_tokens(reading)
    tokens[tokens.index("FN_TABLE") - 1] = "REF_1"  # the Map reads indices, not tokens
    other = from_tokens(tokens)
    assert ground_tables(other, reading)[1] == other.holes


def test_weights_without_tracr_structure_give_no_reading_and_no_sketches():
    model = compile_program(lib_programs()["make_hist"].build(), set(range(5)), 5)
    assert encode_blocks(model) is not None
    assert encode_blocks(model.rotated(0)) is not None  # read in its recovered basis
    # Compressed below the span of its visited states: no reading is left.
    lossy = model.compressed("lossless", dim=model.compressed("lossless").d_model - 4)
    assert encode_blocks(lossy) is None
    assert beam_search(MetaModel(TINY), lossy) == []


def test_1000_grammar_masked_decodes_are_all_valid_programs():
    torch.manual_seed(1)
    meta_model = MetaModel(TINY).eval()
    model = compile_program(lib_programs()["make_sort_unique"].build(), set(range(5)), 5)
    encoded = encode_blocks(model)
    with torch.no_grad():
        kinds, slots = (x[0].numpy() for x in meta_model(*collate([encoded])))
    # Random logits as well as the untrained model's, so that every token gets weight.
    rng = np.random.default_rng(0)
    programs = set()
    for i in range(1000):
        if i % 2:
            kinds, slots = rng.normal(0, 3, kinds.shape), rng.normal(0, 3, slots.shape)
        grammar = Grammar(ops=encoded.ops).push("BOS")
        while not grammar.finished:
            allowed = sorted(grammar.allowed())
            p = np.exp(_log_probs(grammar, allowed, kinds, slots))
            grammar = grammar.push(allowed[rng.choice(len(allowed), p=p / p.sum())])
        decoded = grammar.program()  # raises ProgramError if invalid
        assert len([op for op in decoded.program.ops if op.kind != "select"]) == encoded.ops
        evaluate(decoded.program, [(0, 1, 2), (4,)])  # and it runs
        programs.add(grammar.prefix)
    assert len(programs) > 500  # sampling really explored


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate(out, 60, seed=3, shard_size=30, workers=1, sampler=SamplerConfig(max_ops=3), progress=False)
    return out


def test_a_tiny_dataset_is_overfit(tiny_dataset, tmp_path, monkeypatch):
    examples = load_split(tiny_dataset, "train", 8)
    assert len(examples) == 8
    config = TrainConfig(
        steps=300, batch_size=8, lr=3e-3, warmup=20, val_every=300, max_train=8, workers=1, model=TINY
    )
    train(tiny_dataset, tmp_path / "ckpt.pt", config, quiet=True)
    meta_model = load_meta_model(tmp_path / "ckpt.pt")
    with torch.no_grad():
        loss, accuracy, exact = op_loss(meta_model, batch_of(examples, "cpu"))
    assert loss.item() < 0.05 and exact.item() == 1.0
    # Beam search recovers the training programs (a fresh permutation of their residual).
    from raspsynth.data.shards import load_examples

    pairs = [(program, model) for _, program, model in load_examples(tiny_dataset, "train")][:3]
    models = [model for _, model in pairs]
    targets = [_example_tokens(example_of(program, model)) for program, model in pairs]
    for model, target in zip(models, targets):
        best = beam_search(meta_model, model.permuted(9), beam=4, top_k=1)[0]
        assert _target_tokens(best.tokens) == target
    # The shipped form (float16 weights only) decodes the same.
    export_checkpoint(tmp_path / "ckpt.pt", tmp_path / "slim.pt")
    slim = load_meta_model(tmp_path / "slim.pt")
    assert (tmp_path / "slim.pt").stat().st_size < (tmp_path / "ckpt.pt").stat().st_size / 4
    for model, target in zip(models, targets):
        best = beam_search(slim, model, beam=4, top_k=1)[0]
        assert _target_tokens(best.tokens) == target
    # synthesize(mode="neural") uses the checkpoint: the best sketch, verified, no search.
    pipeline = importlib.import_module("raspsynth.search.synthesize")
    monkeypatch.setattr(pipeline, "default_checkpoint", lambda: tmp_path / "slim.pt")
    # (a sketch with a hole holds a placeholder, which need not verify)
    whole = next(m for m, t in zip(models, targets) if not {"FN_TABLE", "FN2_TABLE", "COEF_OTHER"} & set(t))
    result = synthesize(whole.permuted(4), mode="neural", budget_s=60)
    assert result.verified and {op["from"] for op in result.report["ops"]} == {"neural"}
    assert result.report["meta_model"] == "loaded slim.pt"
    # The CSV log has a header and a row per validation.
    assert (tmp_path / "ckpt.csv").read_text().splitlines()[0].startswith("step,lr,loss")


def _target_tokens(tokens) -> list[str]:
    return [t for t in tokens if t not in ("BOS", "EOS")]


def _example_tokens(example) -> list[str]:
    """An example's target tokens, back from its per-row arrays."""
    from raspsynth.neural.program_tokens import OP_KINDS, vocabulary

    out = []
    for kind, slots in zip(example.kinds, example.slots):
        if kind >= 0:
            out += [OP_KINDS[kind].upper()] + [vocabulary()[t] for t in slots if t >= 0]
    return out


def test_training_resumes_from_its_checkpoint(tiny_dataset, tmp_path):
    config = TrainConfig(
        steps=20, batch_size=4, warmup=5, val_every=10, checkpoint_every=10, workers=1, model=TINY
    )
    train(tiny_dataset, tmp_path / "ckpt.pt", config, quiet=True)
    longer = TrainConfig(
        steps=30, batch_size=4, warmup=5, val_every=10, checkpoint_every=10, workers=1, model=TINY
    )
    train(tiny_dataset, tmp_path / "ckpt.pt", longer, quiet=True)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert state["step"] == 30
    steps = [line.split(",")[0] for line in (tmp_path / "ckpt.csv").read_text().splitlines()[1:]]
    assert steps == ["10", "20", "30"]  # resumed at 20, not restarted


def test_distributed_data_parallel_on_two_cpu_processes(tiny_dataset, tmp_path):
    script = (
        "import sys; from raspsynth.neural.train import TrainConfig, train;"
        "from raspsynth.neural.meta_model import MetaModelConfig;"
        "tiny = MetaModelConfig(width=32, heads=2, layers=1, dropout=0.0);"
        "train(sys.argv[1], sys.argv[2], TrainConfig(steps=6, batch_size=4, warmup=2, val_every=3,"
        " checkpoint_every=3, workers=1, model=tiny), quiet=True)"
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


@pytest.mark.parametrize("checkpoint", ["cpu", "gpu"])
@pytest.mark.parametrize("name", ["make_hist", "make_sort_unique", "make_frac_prevs"])
def test_the_committed_checkpoints_alone_recover_programs_over_string_tokens(name, checkpoint):
    """The training programs have integer tokens only; over letters every
    function on tokens is a table token, filled from the reading. Pure
    neural mode (no search, no repair) still verifies against tracr's model,
    with either committed checkpoint."""
    entry = lib_programs()[name]
    model = compile_program(entry.build(), {"a", "b", "c", "d"}, entry.max_seq_len).rotated(3)
    result = synthesize(model, mode="neural", budget_s=60, config=SearchConfig(meta_model=checkpoint))
    assert result.verified and {op["from"] for op in result.report["ops"]} == {"neural"}
    assert result.report["meta_model"] == f"loaded {checkpoint_path(checkpoint).name}"


def test_a_meta_model_is_chosen_by_name_or_path_and_a_missing_one_is_an_error(tmp_path):
    gpu, cpu = load_meta_model(checkpoint_path("gpu")), load_meta_model(default_checkpoint())
    assert gpu.config.width > cpu.config.width
    with pytest.raises(ConfigError, match="meta_model must be one of cpu, gpu or a .pt file"):
        SearchConfig(meta_model="large")
    model = compile_program(lib_programs()["make_length"].build(), {0, 1, 2}, 5)
    missing = SearchConfig(meta_model=str(tmp_path / "none.pt"))
    with pytest.raises(ConfigError, match="no checkpoint at"):
        synthesize(model, mode="neural", config=missing)
    # search mode reads no meta-model, so it asks for none
    assert synthesize(model, mode="search", config=missing).verified


class _Payload:
    """Pickles to a call: a checkpoint that would run code if unpickled freely."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_a_file_that_is_no_checkpoint_is_refused_by_name(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(RaspsynthError, match="not a raspsynth meta-model checkpoint"):
        load_meta_model(garbage)
    # Only tensors and plain data are read: a pickled call is refused, never run.
    payload = tmp_path / "payload.pt"
    torch.save({"model_config": {}, "model": _Payload()}, payload)
    with pytest.raises(RaspsynthError, match="not a raspsynth meta-model checkpoint"):
        load_meta_model(payload)
    assert "code ran" not in capsys.readouterr().out
    with pytest.raises(RaspsynthError, match="not a raspsynth meta-model checkpoint"):
        load_meta_model(tmp_path / "missing.pt")


def test_augmented_training_reads_a_share_of_programs_in_another_residual(tiny_dataset):
    from raspsynth.data.generate import split_of
    from raspsynth.data.shards import load_examples
    from raspsynth.neural.train import augmented_residual

    rng = np.random.default_rng(0)
    hashes = [f"{value:016x}" for value in rng.integers(0, 2**63, size=4000)]
    picked = [h for h in hashes if augmented_residual(h, ("rotated", "lossless"), 0.25)]
    assert 0.2 < len(picked) / len(hashes) < 0.3
    # Independent of the split: the share holds within the train split too.
    train = [h for h in hashes if split_of(h) == "train"]
    assert 0.2 < sum(h in picked for h in train) / len(train) < 0.3
    assert {augmented_residual(h, ("rotated", "lossless"), 0.25)[0] for h in picked} == {
        "rotated",
        "lossless",
    }
    assert augmented_residual(hashes[0], (), 1.0) is None

    plain = load_split(tiny_dataset, "train", 6)
    augmented = load_split(tiny_dataset, "train", 6, augment=("lossless",), augment_share=1.0)
    records = list(load_examples(tiny_dataset, "train"))[:6]
    for example, (record, program, model) in zip(augmented, records):
        kind, seed = augmented_residual(record["hash"], ("lossless",), 1.0)
        expected = example_of(program, model.in_residual(kind, seed)) or example_of(program, model)
        assert np.array_equal(example.features, expected.features)
        assert np.array_equal(example.slots, expected.slots)
    # A lossless projection drops tracr's redundant dimensions, and the features count them.
    assert any(not np.array_equal(a.features, b.features) for a, b in zip(plain, augmented))
    assert load_split(tiny_dataset, "train", 6) is not augmented  # cached apart
    with pytest.raises(RaspsynthError, match="augment"):
        load_split(tiny_dataset, "train", 6, augment=("sheared",), augment_share=0.5)
