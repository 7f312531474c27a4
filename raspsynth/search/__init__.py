"""Search layer: candidates from the symbolic reading, repair, enumeration,
verification, and the public `synthesize()`."""

from raspsynth.search.synthesize import SynthesisResult, synthesize
from raspsynth.search.verify import Verification, verify

__all__ = ["SynthesisResult", "Verification", "synthesize", "verify"]
