"""Search layer: verification of candidate programs against a model (so far)."""

from raspsynth.search.verify import Verification, verify

__all__ = ["Verification", "verify"]
