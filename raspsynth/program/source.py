"""Python source for a program IR.

In: a `Program`, and optionally a readable lambda for some ops (expressions
found for table functions and predicates, equal to the table on its domain, which is all
tracr evaluates a lambda on). Out: self-contained Python text that, run with
exec, binds `program` to the equivalent tracr `rasp.SOp`. It imports only
tracr.
"""

from __future__ import annotations

from collections.abc import Mapping

from raspsynth.program.ir import PREDICATE_ARGUMENTS, SOURCES, Program


def to_source(program: Program, lambdas: Mapping[str, str] | None = None) -> str:
    """Python text defining `program`; variable names follow the IR's op names.
    `lambdas` maps op names to lambda source used instead of the op's function."""
    lambdas = lambdas or {}
    names = {"tokens": "rasp.tokens", "indices": "rasp.indices"}
    for op in program.ops:
        names[op.name] = _identifier(op.name, set(names.values()))
    lines = ["from tracr.rasp import rasp", ""]
    for op in program.ops:
        args = [names[i] for i in op.inputs]
        if op.kind == "map":
            expr = f"rasp.Map({lambdas.get(op.name) or op.fn.source()}, {args[0]}, simplify=False)"
        elif op.kind == "sequence_map":
            expr = f"rasp.SequenceMap({lambdas.get(op.name) or op.fn.source()}, {args[0]}, {args[1]})"
        elif op.kind == "linear_sequence_map":
            a, b = op.coefficients
            expr = f"rasp.LinearSequenceMap({args[0]}, {args[1]}, {a!r}, {b!r})"
        elif op.kind == "select":
            if op.fn is None:
                predicate = f"rasp.Comparison.{op.comparison}"
            else:
                predicate = lambdas.get(op.name) or op.fn.source(PREDICATE_ARGUMENTS)
            expr = f"rasp.Select({args[0]}, {args[1]}, {predicate})"
        elif op.kind == "aggregate":
            default = "0" if op.encoding == "numerical" else "None"
            expr = f"rasp.Aggregate({args[0]}, {args[1]}, default={default})"
        else:  # selector_width
            expr = f"rasp.SelectorWidth({args[0]})"
        if op.kind != "select":
            expr = f"rasp.{op.encoding}({expr})"
        lines.append(f"{names[op.name]} = {expr}.named({op.name!r})")
    lines += ["", f"program = {names[program.output]}", ""]
    return "\n".join(lines)


def _identifier(name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if not base or base[0].isdigit() or base in ("program", "rasp", *SOURCES):
        base = f"v_{base}"
    candidate, n = base, 1
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    return candidate
