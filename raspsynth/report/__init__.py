"""The HTML report of a synthesis result: the recovered program, its circuit
by layer, per-op tables and predicate heatmaps, and how it was verified.

It reads a `SynthesisResult` as data and never calls the search, so the
dependency runs one way: `SynthesisResult.to_html()` and `raspsynth report`
call down into it.
"""

from raspsynth.report.html import render_html

__all__ = ["render_html"]
