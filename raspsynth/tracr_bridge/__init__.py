"""The only package that imports tracr: models, interchange files, fast
compilation, batched forward passes, probe inputs and agreement checks."""

from raspsynth.tracr_bridge.compile import compile_craft, compile_program, from_tracr
from raspsynth.tracr_bridge.interchange import load_model
from raspsynth.tracr_bridge.model import HeadWeights, IOSpec, LayerWeights, Model
from raspsynth.tracr_bridge.outputs import rows_equal, values_equal
from raspsynth.tracr_bridge.probes import agreement, probe_inputs
from raspsynth.tracr_bridge.transformer_lens import from_transformer_lens

__all__ = [
    "HeadWeights",
    "IOSpec",
    "LayerWeights",
    "Model",
    "agreement",
    "compile_craft",
    "compile_program",
    "from_tracr",
    "from_transformer_lens",
    "load_model",
    "probe_inputs",
    "rows_equal",
    "values_equal",
]
