"""The neural meta-model: weights in, ranked program sketches out.

`block_encoding` (the symbolic layer's reading of the weights -> one row per
recovered block) -> `meta_model` (torch encoder with per-op kind and slot
heads) -> `decode` (grammar-masked beam search over `program_tokens`);
`targets` aligns a training program's tokens to its model's reading, and
`train` fits the model on `raspsynth data generate` datasets. Torch is
imported only by those modules, so importing this package is cheap.
"""

from pathlib import Path

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"

# Beam search defaults (here, not in `decode`, so that the search's config can
# name them without importing torch).
BEAM = 8  # beams kept per decoding step
TOP_K = 5  # sketches returned
HOLE_THRESHOLD = 0.5  # a slot below this probability is a hole


# The committed checkpoints, by the name `SearchConfig.meta_model` gives them:
# the default, trained on the 2-core CPU, and the larger one trained on a GPU
# (README, "Meta-model").
CHECKPOINTS = {"cpu": "meta_model.pt", "gpu": "meta_model_gpu.pt"}
DEFAULT_META_MODEL = "cpu"


def default_checkpoint() -> Path:
    """Where synthesize() looks for the trained meta-model."""
    return CHECKPOINT_DIR / CHECKPOINTS[DEFAULT_META_MODEL]


def checkpoint_path(name: str) -> Path:
    """A committed checkpoint by name ("cpu", "gpu"), else `name` read as a file path."""
    return CHECKPOINT_DIR / CHECKPOINTS[name] if name in CHECKPOINTS else Path(name)
