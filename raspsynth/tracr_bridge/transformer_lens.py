"""TransformerLens interchange: tracr-shaped TransformerLens models <-> `Model`.

In: a TransformerLens model (a 4.x `TransformerBridge` booted natively, or a
legacy `HookedTransformer`), or its state dict plus config, and the
vocabularies the weights cannot tell (token-embedding row order, unembed
column order). Out: a `Model`. The other way, `to_transformer_lens(model)`
builds a 4.x `TransformerBridge` with tracr's forward pass and a correct
unembed: the model's own `unembed` matrix, not the first residual
dimensions (TransformerLens issue #481).

Reading needs only torch and numpy: state dicts in three key conventions are
understood, so a TracrBench or InterpBench checkpoint loads without
TransformerLens installed:
- the bridge's (`embed.weight`, `blocks.L.attn.q.weight` [H*K, D], ...);
- the native module's (`tok_embed.weight`, `layers.L.attn.q.weight`, ...);
- HookedTransformer's (`embed.W_E`, `blocks.L.attn.W_Q` [H, D, K], ...).
Writing needs the `raspsynth[tl]` extra (transformer-lens 4.x).

A model that is not tracr-shaped (LayerNorm, GELU or gated MLPs, rotary
positions, soft-capped logits, grouped keys) raises `ModelFormatError`
saying what it has. Equivalent forms are folded in exactly: an attention
scale other than sqrt(d_head) into the query weights, an unembed bias into
one extra residual dimension held at 1 by the position embedding.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raspsynth.errors import InputError, ModelFormatError
from raspsynth.tracr_bridge.compile import DEFAULT_BOS, DEFAULT_PAD
from raspsynth.tracr_bridge.interchange import model_from_arrays
from raspsynth.tracr_bridge.model import FORMAT_VERSION, Model, Token

TL_SUFFIXES = (".pt", ".pth")

# Config fields that must hold these values for tracr's forward pass (None
# and missing both read as "off").
_OFF_FEATURES = {
    "normalization_type": "LayerNorm/RMSNorm",
    "final_rms": "a final RMSNorm",
    "gated_mlp": "a gated MLP",
    "attn_scores_soft_cap": "soft-capped attention scores",
    "output_logits_soft_cap": "soft-capped output logits",
}

# Bridge-convention name <- native-module-convention name.
_NATIVE_RENAMES = (
    (r"^tok_embed\.", "embed."),
    (r"^pos\.", "pos_embed."),
    (r"^layers\.(\d+)\.", r"blocks.\1."),
    (r"\.mlp\.fc_in\.", ".mlp.in."),
    (r"\.mlp\.fc_out\.", ".mlp.out."),
    (r"^head\.", "unembed."),
)


def from_transformer_lens(
    hooked: Any,
    input_vocab: Sequence[Token],
    output_values: Sequence[Any] | None,
    bos: str = DEFAULT_BOS,
    pad: str = DEFAULT_PAD,
) -> Model:
    """A `Model` from a tracr-shaped TransformerLens model.

    `hooked` is anything with `.cfg` and `.state_dict()`: a TransformerLens
    4.x `TransformerBridge` or a legacy `HookedTransformer`. `input_vocab`
    lists the tokens in embedding-row order (BOS and PAD included);
    `output_values` the outputs in unembed-column order, or None for a
    numerical output (one unembed column).
    """
    if not (hasattr(hooked, "cfg") and callable(getattr(hooked, "state_dict", None))):
        raise InputError(
            "from_transformer_lens takes a TransformerLens model (an object with .cfg and "
            f".state_dict()), not {type(hooked).__name__}"
        )
    return model_from_state_dict(hooked.state_dict(), hooked.cfg, input_vocab, output_values, bos, pad)


def model_from_state_dict(
    state_dict: Mapping[str, Any],
    cfg: Any,
    input_vocab: Sequence[Token],
    output_values: Sequence[Any] | None,
    bos: str = DEFAULT_BOS,
    pad: str = DEFAULT_PAD,
) -> Model:
    """A `Model` from a TransformerLens state dict (any of the three key
    conventions) and its config (a config object or a dict)."""
    cfg = _config_dict(cfg)
    arrays = {str(k): _array(k, v) for k, v in state_dict.items()}
    if any(k.startswith(("embed.W_E", "blocks.0.attn.W_Q")) for k in arrays):
        weights = _from_legacy(arrays, cfg)
    else:
        weights = _from_bridge(_renamed(arrays), cfg)
    _check_tracr_shaped(cfg, arrays)
    return _assemble(weights, cfg, list(input_vocab), output_values, bos, pad)


def to_transformer_lens(model: Model) -> Any:
    """A TransformerLens 4.x `TransformerBridge` computing `model`'s logits.

    Feed it token ids with BOS at position 0 (`model.encode`); its argmax
    over the last axis indexes `model.spec.output_values`. Needs
    `pip install 'raspsynth[tl]'`.
    """
    import torch

    try:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import (
            TransformerBridge,
            sources,  # noqa: F401  (registers boot_native)
        )
    except ImportError:
        raise InputError(
            "to_transformer_lens needs TransformerLens 4.x: pip install 'raspsynth[tl]'"
        ) from None
    cfg, state = transformer_lens_weights(model)
    bridge = TransformerBridge.boot_native(TransformerBridgeConfig(**cfg))
    bridge.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return bridge.eval()


def transformer_lens_weights(model: Model) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The TransformerLens config (a plain dict) and bridge-convention state
    dict (float32 arrays) of `model`; what `to_transformer_lens` loads and
    `save_transformer_lens` writes."""
    spec = model.spec
    heads, key_size = model.num_heads, model.key_size
    if heads == 0 or key_size == 0:  # TransformerLens needs a head: one that writes nothing
        heads, key_size = 1, 1
    hidden = model.mlp_hidden_size
    cfg = {
        "n_layers": model.num_layers,
        "d_model": model.d_model,
        "d_head": key_size,
        "n_heads": heads,
        "d_mlp": hidden if hidden else None,
        "attn_only": hidden == 0,
        "d_vocab": len(spec.input_vocab),
        "d_vocab_out": model.unembed.shape[1],
        "n_ctx": spec.max_seq_len + 1,
        "act_fn": "relu",
        "normalization_type": None,
        "attention_dir": "causal" if spec.causal else "bidirectional",
        "positional_embedding_type": "standard",
    }
    d = model.d_model
    state = {
        "embed.weight": model.token_embed,
        "pos_embed.weight": model.pos_embed,
        "unembed.weight": model.unembed.T,
        "unembed.bias": np.zeros(model.unembed.shape[1], np.float32),
    }
    for i, layer in enumerate(model.layers):
        prefix = f"blocks.{i}"
        for proj in ("q", "k", "v"):
            name = {"q": "query", "k": "key", "v": "value"}[proj]
            w = [getattr(h, f"{name}_w") for h in layer.heads] or [np.zeros((d, 1), np.float32)]
            b = [getattr(h, f"{name}_b") for h in layer.heads] or [np.zeros(1, np.float32)]
            state[f"{prefix}.attn.{proj}.weight"] = np.concatenate(w, axis=1).T
            state[f"{prefix}.attn.{proj}.bias"] = np.concatenate(b)
        out = [h.output_w for h in layer.heads] or [np.zeros((1, d), np.float32)]
        state[f"{prefix}.attn.o.weight"] = np.concatenate(out, axis=0).T
        # Without an MLP, its constant output bias joins the attention's:
        # both are added to the same residual in the same layer.
        state[f"{prefix}.attn.o.bias"] = layer.attn_output_b + (0 if hidden else layer.mlp_out_b)
        if hidden:
            state[f"{prefix}.mlp.in.weight"] = layer.mlp_in_w.T
            state[f"{prefix}.mlp.in.bias"] = layer.mlp_in_b
            state[f"{prefix}.mlp.out.weight"] = layer.mlp_out_w.T
            state[f"{prefix}.mlp.out.bias"] = layer.mlp_out_b
    return cfg, {k: np.array(v, dtype=np.float32, order="C") for k, v in state.items()}


def spec_json(model: Model) -> dict[str, Any]:
    """The vocabularies a TransformerLens file does not hold, as the JSON
    `load_transformer_lens` reads beside it (fields named as in the
    raspsynth-model/1 meta)."""
    meta = model.meta()
    return {key: meta[key] for key in ("input_vocab", "bos", "pad", "output")}


def save_transformer_lens(model: Model, path: str | os.PathLike) -> Path:
    """Write `model` as a TransformerLens checkpoint: `path` (.pt, a dict of
    `cfg` and bridge-convention `state_dict`, loadable with
    `torch.load(weights_only=True)`) and the vocabularies as JSON at
    `<path without suffix>.json`. Returns the JSON's path."""
    import torch

    path = Path(path)
    cfg, state = transformer_lens_weights(model)
    torch.save({"cfg": cfg, "state_dict": {k: torch.from_numpy(v) for k, v in state.items()}}, path)
    spec_path = path.with_suffix(".json")
    spec_path.write_text(json.dumps(spec_json(model), indent=2) + "\n")
    return spec_path


def load_transformer_lens(path: str | os.PathLike, spec: str | os.PathLike | None = None) -> Model:
    """Read a TransformerLens checkpoint (.pt / .pth) and its vocabularies.

    The checkpoint is a state dict, or a dict holding `state_dict` and `cfg`;
    it is read with `torch.load(weights_only=True)`, so no pickled code runs.
    `spec` (default `<path without suffix>.json`) holds `input_vocab`, `bos`,
    `pad` and `output` as in the raspsynth-model/1 meta, and the config as
    `cfg` when the checkpoint has none.
    """
    import torch

    path = Path(path)
    spec_path = Path(spec) if spec is not None else path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    if not spec_path.is_file():
        raise ModelFormatError(
            f"{path}: a TransformerLens checkpoint needs its vocabularies: no spec JSON at {spec_path} "
            "(fields input_vocab, bos, pad, output; see README)"
        )
    try:
        info = json.loads(spec_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ModelFormatError(f"{spec_path}: not a JSON spec ({err})") from None
    if not isinstance(info, dict):
        raise ModelFormatError(f"{spec_path}: the spec must be a JSON object")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds on corrupt input
        raise ModelFormatError(
            f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise ModelFormatError(f"{path}: expected a state dict, got {type(checkpoint).__name__}")
    state = checkpoint.get("state_dict", checkpoint)
    cfg = checkpoint.get("cfg", info.get("cfg"))
    if cfg is None:
        raise ModelFormatError(
            f"{path}: no TransformerLens config: save {{'cfg': ..., 'state_dict': ...}} "
            f"or put 'cfg' in {spec_path}"
        )
    for key in ("input_vocab", "bos", "pad", "output"):
        if key not in info:
            raise ModelFormatError(f"{spec_path}: the spec lacks {key!r}")
    output = info["output"]
    if not isinstance(output, dict) or output.get("kind") not in ("categorical", "numerical"):
        raise ModelFormatError(
            f"{spec_path}: 'output' must be {{'kind': 'categorical', 'values': [...]}} or numerical"
        )
    values = output.get("values") if output["kind"] == "categorical" else None
    if output["kind"] == "categorical" and not isinstance(values, list):
        raise ModelFormatError(f"{spec_path}: a categorical 'output' needs a 'values' list")
    if not isinstance(info["input_vocab"], list):
        raise ModelFormatError(f"{spec_path}: 'input_vocab' must be a list")
    try:
        return model_from_state_dict(state, cfg, info["input_vocab"], values, info["bos"], info["pad"])
    except ModelFormatError as err:
        raise ModelFormatError(f"{path}: {err}") from None


# -- reading ----------------------------------------------------------------
def _config_dict(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    if hasattr(cfg, "__dict__"):
        return dict(vars(cfg))
    raise ModelFormatError(
        f"a TransformerLens config must be a dict or config object, not {type(cfg).__name__}"
    )


def _array(key: Any, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device and dtype
        value = value.detach().to("cpu").float().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelFormatError(f"state dict entry {key!r} is not a numeric array") from None
    return array


def _renamed(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in arrays.items():
        for pattern, replacement in _NATIVE_RENAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def _need(cfg: Mapping[str, Any], key: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ModelFormatError(
            f"the TransformerLens config needs a non-negative integer {key!r}, got {value!r}"
        )
    return value


def _take(arrays: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in arrays:
        raise ModelFormatError(f"the state dict has no {key!r}")
    array = arrays[key]
    if array.shape != shape:
        raise ModelFormatError(f"{key!r} has shape {array.shape}, expected {shape} from the config")
    return array


def _rows(arrays: Mapping[str, np.ndarray], key: str) -> int:
    return arrays[key].shape[0] if key in arrays and arrays[key].ndim else 0


def _attention_rescale(cfg: Mapping[str, Any], d_head: int) -> float:
    """Factor on the queries that turns the model's score scale into tracr's
    1/sqrt(d_head)."""
    use = cfg.get("use_attn_scale", True)
    scale = cfg.get("attn_scale", -1.0)
    if not use:
        return math.sqrt(d_head)  # scores were unscaled
    if scale is None or scale <= 0:
        return 1.0
    return math.sqrt(d_head) / float(scale)


def _from_bridge(arrays: dict[str, np.ndarray], cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """raspsynth-model/1 arrays (before the unembed-bias fold) from
    bridge-convention weights."""
    layers, d_head, heads = _need(cfg, "n_layers"), _need(cfg, "d_head"), _need(cfg, "n_heads")
    if "embed.weight" not in arrays:
        raise ModelFormatError(
            "not a TransformerLens state dict: no embedding (embed.weight, tok_embed.weight or embed.W_E)"
        )
    d = arrays["embed.weight"].shape[-1]
    hk = heads * d_head
    rescale = _attention_rescale(cfg, d_head)
    out = {
        "token_embed/embeddings": arrays["embed.weight"],
        "pos_embed/embeddings": arrays.get("pos_embed.weight"),
        "unembed": _take(arrays, "unembed.weight", (_rows(arrays, "unembed.weight"), d)).T,
        "unembed_bias": arrays.get("unembed.bias"),
    }
    if out["pos_embed/embeddings"] is None:
        raise ModelFormatError("the state dict has no position embedding (pos_embed.weight)")
    attn_only = bool(cfg.get("attn_only", False))
    d_mlp = None if attn_only else _need(cfg, "d_mlp")
    for i in range(layers):
        src, dst = f"blocks.{i}", f"transformer/layer_{i}"
        for proj, name in (("q", "query"), ("k", "key"), ("v", "value")):
            w = _take(arrays, f"{src}.attn.{proj}.weight", (hk, d)).T
            b = arrays.get(f"{src}.attn.{proj}.bias", np.zeros(hk))
            if proj == "q":
                w, b = w * rescale, b * rescale
            out[f"{dst}/attn/{name}/w"], out[f"{dst}/attn/{name}/b"] = w, b
        out[f"{dst}/attn/linear/w"] = _take(arrays, f"{src}.attn.o.weight", (d, hk)).T
        out[f"{dst}/attn/linear/b"] = arrays.get(f"{src}.attn.o.bias", np.zeros(d))
        if d_mlp is None:
            _empty_mlp(out, dst, d)
        else:
            out[f"{dst}/mlp/linear_1/w"] = _take(arrays, f"{src}.mlp.in.weight", (d_mlp, d)).T
            out[f"{dst}/mlp/linear_1/b"] = arrays.get(f"{src}.mlp.in.bias", np.zeros(d_mlp))
            out[f"{dst}/mlp/linear_2/w"] = _take(arrays, f"{src}.mlp.out.weight", (d, d_mlp)).T
            out[f"{dst}/mlp/linear_2/b"] = arrays.get(f"{src}.mlp.out.bias", np.zeros(d))
    return out


def _from_legacy(arrays: dict[str, np.ndarray], cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """raspsynth-model/1 arrays from HookedTransformer-convention weights."""
    layers, d_head, heads = _need(cfg, "n_layers"), _need(cfg, "d_head"), _need(cfg, "n_heads")
    if "embed.W_E" not in arrays:
        raise ModelFormatError("the state dict has no embedding embed.W_E")
    d = arrays["embed.W_E"].shape[-1]
    rescale = _attention_rescale(cfg, d_head)
    out = {
        "token_embed/embeddings": arrays["embed.W_E"],
        "pos_embed/embeddings": arrays.get("pos_embed.W_pos"),
        "unembed": arrays.get("unembed.W_U"),
        "unembed_bias": arrays.get("unembed.b_U"),
    }
    if out["pos_embed/embeddings"] is None or out["unembed"] is None:
        raise ModelFormatError("the state dict lacks pos_embed.W_pos or unembed.W_U")
    attn_only = bool(cfg.get("attn_only", False))
    d_mlp = None if attn_only else _need(cfg, "d_mlp")

    def flat_in(key: str) -> np.ndarray:  # [H, D, K] -> [D, H*K]
        return _take(arrays, key, (heads, d, d_head)).transpose(1, 0, 2).reshape(d, heads * d_head)

    def flat_bias(key: str) -> np.ndarray:
        return arrays[key].reshape(heads * d_head) if key in arrays else np.zeros(heads * d_head)

    for i in range(layers):
        src, dst = f"blocks.{i}", f"transformer/layer_{i}"
        for proj, name in (("Q", "query"), ("K", "key"), ("V", "value")):
            w, b = flat_in(f"{src}.attn.W_{proj}"), flat_bias(f"{src}.attn.b_{proj}")
            if proj == "Q":
                w, b = w * rescale, b * rescale
            out[f"{dst}/attn/{name}/w"], out[f"{dst}/attn/{name}/b"] = w, b
        out[f"{dst}/attn/linear/w"] = _take(arrays, f"{src}.attn.W_O", (heads, d_head, d)).reshape(
            heads * d_head, d
        )
        out[f"{dst}/attn/linear/b"] = arrays.get(f"{src}.attn.b_O", np.zeros(d))
        if d_mlp is None:
            _empty_mlp(out, dst, d)
        else:
            out[f"{dst}/mlp/linear_1/w"] = _take(arrays, f"{src}.mlp.W_in", (d, d_mlp))
            out[f"{dst}/mlp/linear_1/b"] = arrays.get(f"{src}.mlp.b_in", np.zeros(d_mlp))
            out[f"{dst}/mlp/linear_2/w"] = _take(arrays, f"{src}.mlp.W_out", (d_mlp, d))
            out[f"{dst}/mlp/linear_2/b"] = arrays.get(f"{src}.mlp.b_out", np.zeros(d))
    return out


def _empty_mlp(out: dict[str, np.ndarray], dst: str, d: int) -> None:
    out[f"{dst}/mlp/linear_1/w"] = np.zeros((d, 0))
    out[f"{dst}/mlp/linear_1/b"] = np.zeros(0)
    out[f"{dst}/mlp/linear_2/w"] = np.zeros((0, d))
    out[f"{dst}/mlp/linear_2/b"] = np.zeros(d)


def _check_tracr_shaped(cfg: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Raise ModelFormatError listing every feature tracr's forward pass lacks."""
    found = []
    for key, what in _OFF_FEATURES.items():
        value = cfg.get(key)
        if value not in (None, False, 0, 0.0, -1, -1.0, "", "none", "None"):
            found.append(f"{what} ({key}={value!r})")
    norms = sorted({k.rsplit(".", 1)[0] for k in arrays if re.search(r"(^|\.)(ln\w*|ln_final|ln_out)\.", k)})
    if norms and not any("normalization_type" in f for f in found):
        found.append(f"normalization weights ({', '.join(norms[:3])})")
    act = cfg.get("act_fn")
    if not cfg.get("attn_only", False) and (act or "").lower() != "relu":
        found.append(f"{act!r} MLP activations (act_fn; tracr's MLPs use ReLU)")
    position = cfg.get("positional_embedding_type", "standard")
    if position not in (None, "standard"):
        found.append(f"{position!r} positions (positional_embedding_type)")
    kv = cfg.get("n_key_value_heads")
    if kv not in (None, cfg.get("n_heads")):
        found.append(f"grouped keys and values (n_key_value_heads={kv})")
    if found:
        raise ModelFormatError(
            "not a tracr-shaped TransformerLens model: it has "
            + "; ".join(found)
            + ". raspsynth reads models with no normalization, ReLU MLPs (or none), standard "
            "positions and plain softmax attention, as tracr compiles them."
        )


def _assemble(
    weights: dict[str, np.ndarray],
    cfg: Mapping[str, Any],
    input_vocab: list,
    output_values: Sequence[Any] | None,
    bos: str,
    pad: str,
) -> Model:
    unembed_bias = weights.pop("unembed_bias")
    n_ctx = weights["pos_embed/embeddings"].shape[0]
    if n_ctx < 2:
        raise ModelFormatError(f"n_ctx is {n_ctx}: there is no position after BOS")
    if unembed_bias is not None and np.any(unembed_bias != 0):
        weights = _with_bias_dimension(weights, unembed_bias)
    if bos not in input_vocab or pad not in input_vocab:
        raise InputError(f"bos {bos!r} and pad {pad!r} must both be in input_vocab {input_vocab}")
    heads, d_head = _need(cfg, "n_heads"), _need(cfg, "d_head")
    numerical = output_values is None
    meta = {
        "format": FORMAT_VERSION,
        "input_vocab": input_vocab,
        "bos": bos,
        "pad": pad,
        "max_seq_len": n_ctx - 1,
        "output": {"kind": "numerical"}
        if numerical
        else {"kind": "categorical", "values": list(output_values)},
        "num_heads": heads,
        "num_layers": _need(cfg, "n_layers"),
        "key_size": d_head,
        "mlp_hidden_size": weights["transformer/layer_0/mlp/linear_1/w"].shape[1]
        if cfg.get("n_layers")
        else 0,
        "causal": cfg.get("attention_dir", "causal") == "causal",
    }
    if len(input_vocab) != weights["token_embed/embeddings"].shape[0]:
        raise InputError(
            f"input_vocab has {len(input_vocab)} tokens but the embedding has "
            f"{weights['token_embed/embeddings'].shape[0]} rows"
        )
    columns = weights["unembed"].shape[1]
    if (1 if numerical else len(output_values)) != columns:
        given = (
            "a numerical output takes 1" if numerical else f"{len(output_values)} output values were given"
        )
        raise InputError(f"the unembed has {columns} columns but {given}")
    return model_from_arrays(weights, meta)


def _with_bias_dimension(weights: dict[str, np.ndarray], bias: np.ndarray) -> dict[str, np.ndarray]:
    """`weights` with one more residual dimension (the last) that is 1 at every
    position and read only by the unembed, whose row there is `bias`."""
    out = {}
    for key, array in weights.items():
        if key in ("token_embed/embeddings", "pos_embed/embeddings") or key.endswith(
            ("linear/w", "linear/b", "linear_2/w", "linear_2/b")
        ):
            array = np.concatenate([array, np.zeros(array.shape[:-1] + (1,))], axis=-1)  # writers
        elif key.endswith(("query/w", "key/w", "value/w", "linear_1/w")):
            array = np.concatenate([array, np.zeros((1, array.shape[1]))], axis=0)  # readers
        elif key == "unembed":
            array = np.concatenate([array, bias.reshape(1, -1)], axis=0)
        out[key] = array
    out["pos_embed/embeddings"][:, -1] = 1.0
    return out
