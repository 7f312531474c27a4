"""The neural meta-model: weights in, ranked program sketches out.

`weight_encoding` (weights -> residual-dimension tokens) -> `meta_model`
(torch encoder-decoder) -> `decode` (grammar-masked beam search over
`program_tokens`); `train` fits it on `raspsynth data generate` datasets.
Torch is imported only by those modules, so importing this package is cheap.
"""

from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


def default_checkpoint() -> Path:
    """Where synthesize() looks for the trained meta-model."""
    return CHECKPOINT_DIR / "meta_model.pt"
