"""TransformerLens interchange: Model -> TransformerBridge -> Model, legacy
HookedTransformer state dicts, checkpoint files, and clear errors for models
that are not tracr-shaped.

Independent expectations: the shared examples' reference outputs (written by
tracr's stock compiler), TransformerLens's own forward pass and its own
legacy-checkpoint converter.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import raspsynth
from raspsynth.errors import InputError, ModelFormatError
from raspsynth.tracr_bridge.compile import compile_program
from raspsynth.tracr_bridge.lib_programs import lib_programs
from raspsynth.tracr_bridge.transformer_lens import (
    load_transformer_lens,
    model_from_state_dict,
    save_transformer_lens,
    transformer_lens_weights,
)

torch = pytest.importorskip("torch")


def tl_outputs(bridge, model, seqs):
    """Decoded outputs of a TransformerLens model: batches padded and masked
    with TransformerLens's own attention mask, argmax over its logits."""
    outputs = []
    for start in range(0, len(seqs), 512):
        chunk = model.encode(seqs[start : start + 512])
        length = max(len(ids) for ids in chunk)
        pad = model.spec.input_vocab.index(model.spec.pad)
        ids = torch.full((len(chunk), length), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), length), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.from_numpy(seq)
            mask[row, : len(seq)] = 1
        with torch.no_grad():
            logits = bridge(ids, attention_mask=mask).float().numpy()
        for row, seq in enumerate(chunk):
            got = logits[row, 1 : len(seq)]
            if model.spec.numerical:
                outputs.append(got[:, 0].astype(float).tolist())
            else:
                outputs.append([model.spec.output_values[i] for i in got.argmax(-1)])
    return outputs


def same_outputs(a, b, numerical):
    if not numerical:
        return a == b
    return all(np.allclose(x, y, atol=1e-4) for x, y in zip(a, b))


def legacy_state_dict(model):
    """model's weights in HookedTransformer's (TransformerLens <= 3) layout, by hand."""
    heads, k, d = model.num_heads, model.key_size, model.d_model
    state = {
        "embed.W_E": model.token_embed,
        "pos_embed.W_pos": model.pos_embed,
        "unembed.W_U": model.unembed,
        "unembed.b_U": np.zeros(model.unembed.shape[1], np.float32),
    }
    for i, layer in enumerate(model.layers):
        b = f"blocks.{i}"
        for p, n in (("Q", "query"), ("K", "key"), ("V", "value")):
            state[f"{b}.attn.W_{p}"] = np.stack([getattr(h, f"{n}_w") for h in layer.heads])  # [H, D, K]
            state[f"{b}.attn.b_{p}"] = np.stack([getattr(h, f"{n}_b") for h in layer.heads])
        state[f"{b}.attn.W_O"] = np.stack([h.output_w for h in layer.heads])  # [H, K, D]
        state[f"{b}.attn.b_O"] = layer.attn_output_b
        state[f"{b}.attn.mask"] = np.tril(np.ones((model.spec.max_seq_len + 1,) * 2))  # a buffer, ignored
        state[f"{b}.mlp.W_in"] = layer.mlp_in_w
        state[f"{b}.mlp.b_in"] = layer.mlp_in_b
        state[f"{b}.mlp.W_out"] = layer.mlp_out_w
        state[f"{b}.mlp.b_out"] = layer.mlp_out_b
    cfg = {
        "n_layers": model.num_layers,
        "d_model": d,
        "n_heads": heads,
        "d_head": k,
        "d_mlp": model.mlp_hidden_size,
        "act_fn": "relu",
        "normalization_type": None,
        "attention_dir": "bidirectional",
    }
    return state, cfg


def lib_models():
    return [
        (name, compile_program(e.build(), e.vocab, e.max_seq_len))
        for name, e in sorted(lib_programs().items())
    ]


def test_round_trip_through_transformer_lens_on_the_shared_examples(shared_examples):
    pytest.importorskip("transformer_lens")
    for path in shared_examples:
        model = raspsynth.load_model(str(path))
        bridge = model.to_transformer_lens()
        reference = json.loads(path.with_suffix(".json").read_text())["examples"]
        got = tl_outputs(bridge, model, [ex["input"] for ex in reference])
        assert same_outputs(got, [ex["output"] for ex in reference], model.spec.numerical), path.name
        probes = raspsynth.probe_inputs(model)
        assert same_outputs(tl_outputs(bridge, model, probes), model.run(probes), model.spec.numerical)
        back = raspsynth.from_transformer_lens(
            bridge, model.spec.input_vocab, model.spec.output_values, model.spec.bos, model.spec.pad
        )
        assert back.meta() == model.meta()
        for name, array in model.arrays().items():
            np.testing.assert_array_equal(back.arrays()[name], array, err_msg=name)


def test_round_trip_on_tracr_lib_programs():
    pytest.importorskip("transformer_lens")
    for name, model in lib_models():
        bridge = model.permuted(seed=3).to_transformer_lens()
        probes = raspsynth.probe_inputs(model)[:3000]
        assert same_outputs(tl_outputs(bridge, model, probes), model.run(probes), model.spec.numerical), name
        back = raspsynth.from_transformer_lens(
            bridge, model.spec.input_vocab, model.spec.output_values, model.spec.bos, model.spec.pad
        )
        assert back.run(probes) == model.permuted(seed=3).run(probes), name


def test_legacy_hooked_transformer_layout_matches_transformer_lens_converter(shared_examples):
    model = raspsynth.load_model(str(shared_examples[0]))
    state, cfg = legacy_state_dict(model)
    read = model_from_state_dict(state, cfg, model.spec.input_vocab, model.spec.output_values)
    probes = raspsynth.probe_inputs(model)
    assert read.run(probes) == model.run(probes)
    tl = pytest.importorskip("transformer_lens")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    tl_cfg, bridge_state = transformer_lens_weights(model)
    converted = convert_tl_checkpoint(
        {k: torch.tensor(np.asarray(v, np.float32)) for k, v in state.items()},
        TransformerBridgeConfig(**tl_cfg),
    )
    assert tl is not None
    for key, value in bridge_state.items():
        np.testing.assert_allclose(converted[key].numpy(), value, err_msg=key)


def test_checkpoint_file_and_spec_load_and_synthesize(tmp_path, shared_examples):
    model = raspsynth.load_model(str(next(p for p in shared_examples if p.stem == "hist")))
    spec = save_transformer_lens(model.permuted(seed=1), tmp_path / "hist.pt")
    assert json.loads(spec.read_text())["input_vocab"] == list(model.spec.input_vocab)
    loaded = raspsynth.load_model(str(tmp_path / "hist.pt"))
    probes = raspsynth.probe_inputs(model)
    assert loaded.run(probes) == model.run(probes)
    result = raspsynth.synthesize(str(tmp_path / "hist.pt"), budget_s=30)
    assert result.verified and result.certificate in ("exhaustive", "isomorphic")  # both: all inputs


def test_unembed_bias_and_attention_scale_are_folded_exactly(shared_examples):
    model = raspsynth.load_model(str(next(p for p in shared_examples if p.stem == "sort_unique")))
    state, cfg = legacy_state_dict(model)
    bias = np.linspace(-0.2, 0.3, model.unembed.shape[1]).astype(np.float32)
    state["unembed.b_U"] = bias
    # Scores divided by 2 instead of sqrt(d_head): queries scaled to compensate.
    factor = np.sqrt(model.key_size) / 2.0
    for i in range(model.num_layers):
        state[f"blocks.{i}.attn.W_Q"] = state[f"blocks.{i}.attn.W_Q"] / factor
        state[f"blocks.{i}.attn.b_Q"] = state[f"blocks.{i}.attn.b_Q"] / factor
    read = model_from_state_dict(
        {**state}, {**cfg, "attn_scale": 2.0}, model.spec.input_vocab, model.spec.output_values
    )
    assert read.d_model == model.d_model + 1  # the bias dimension
    longest = [x for x in raspsynth.probe_inputs(model) if len(x) == model.spec.max_seq_len]
    ids = np.stack(model.encode(longest))
    want = model.residual_stream(ids) @ model.unembed + bias
    got = read.residual_stream(ids) @ read.unembed
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"normalization_type": "LN"}, "LayerNorm"),
        ({"act_fn": "gelu"}, "gelu"),
        ({"positional_embedding_type": "rotary"}, "rotary"),
        ({"n_key_value_heads": 7}, "grouped"),
    ],
)
def test_models_that_are_not_tracr_shaped_are_refused_with_what_they_have(shared_examples, change, says):
    model = raspsynth.load_model(str(shared_examples[0]))
    state, cfg = legacy_state_dict(model)
    with pytest.raises(ModelFormatError, match=says):
        model_from_state_dict(state, {**cfg, **change}, model.spec.input_vocab, model.spec.output_values)


def test_layer_norm_weights_are_refused_even_without_a_config_flag(shared_examples):
    model = raspsynth.load_model(str(shared_examples[0]))
    state, cfg = legacy_state_dict(model)
    state["blocks.0.ln1.w"] = np.ones(model.d_model)
    with pytest.raises(ModelFormatError, match="normalization weights"):
        model_from_state_dict(state, cfg, model.spec.input_vocab, model.spec.output_values)


def test_bad_vocabularies_and_files_are_named_errors(tmp_path, shared_examples):
    model = raspsynth.load_model(str(shared_examples[0]))
    state, cfg = legacy_state_dict(model)
    with pytest.raises(InputError, match="embedding has"):
        model_from_state_dict(state, cfg, model.spec.input_vocab + ("x",), model.spec.output_values)
    with pytest.raises(InputError):
        raspsynth.from_transformer_lens(object(), [], [])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    spec = {"input_vocab": ["B", "P"], "bos": "B", "pad": "P", "output": {"kind": "numerical"}}
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    with pytest.raises(ModelFormatError, match="not a readable torch checkpoint"):
        load_transformer_lens(tmp_path / "bad.pt")
    save_transformer_lens(model, tmp_path / "m.pt")
    (tmp_path / "m.json").unlink()
    with pytest.raises(ModelFormatError, match="needs its vocabularies"):
        load_transformer_lens(tmp_path / "m.pt")
