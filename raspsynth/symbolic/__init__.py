"""Reading components out of weights, and expression search over their tables.

So far: `find_expression`, MIPS-style expression search (table -> lambda).
Residual-block recovery, component tables and `decompile_structure` are the
rest of the symbolic-layer issue.
"""

from raspsynth.symbolic.expression_search import Expression, find_expression

__all__ = ["Expression", "find_expression"]
