"""raspsynth: recover verified RASP programs from tracr-compiled transformer weights."""

from raspsynth.errors import (
    CompileError,
    InputError,
    MetaModelUnavailable,
    ModelFormatError,
    NotTracrStructured,
    RaspsynthError,
)
from raspsynth.search import SynthesisResult, synthesize
from raspsynth.tracr_bridge import (
    Model,
    agreement,
    compile_program,
    from_tracr,
    from_transformer_lens,
    load_model,
    probe_inputs,
)

__version__ = "0.1.0"

__all__ = [
    "CompileError",
    "InputError",
    "MetaModelUnavailable",
    "Model",
    "ModelFormatError",
    "NotTracrStructured",
    "RaspsynthError",
    "SynthesisResult",
    "agreement",
    "compile_program",
    "from_tracr",
    "from_transformer_lens",
    "load_model",
    "probe_inputs",
    "synthesize",
]
