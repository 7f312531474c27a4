"""Checking what the symbolic layer read against the compiler's own account.

In: a `Structure` and its component tables read from a (possibly permuted)
model, the `CompilerGraph` of the program it was compiled from, and the
permutation applied to the residual. Out: `StructureComparison`: whether
every block is exactly one SOp's dimensions, whether every component reads
the SOps the compiler wired it to, and whether every table entry equals the
program's function. Used by tests and `experiments/bench_symbolic.py`;
synthesis never sees a compiler graph.

An operand the weights never read (the input of a constant function, a side
of a predicate that selects nothing) cannot be recovered and does not
matter; such operands are counted, not failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from raspsynth.program.canonical import apply_ignoring_errors
from raspsynth.symbolic.component_tables import AttentionTable, MlpTable
from raspsynth.symbolic.residual_structure import Structure
from raspsynth.tracr_bridge.compiler_graph import CompilerGraph

MLP_KINDS = ("map", "sequence_map", "linear_sequence_map")


@dataclasses.dataclass(frozen=True)
class StructureComparison:
    block_errors: tuple[str, ...]
    dataflow_errors: tuple[str, ...]
    table_errors: tuple[str, ...]
    unread_operands: int
    matched: dict[str, str]  # our block -> compiler label

    @property
    def blocks_ok(self) -> bool:
        return not self.block_errors

    @property
    def dataflow_ok(self) -> bool:
        return not self.block_errors and not self.dataflow_errors

    @property
    def tables_ok(self) -> bool:
        return self.dataflow_ok and not self.table_errors


def compare_with_compiler(
    structure: Structure, tables: dict, graph: CompilerGraph, permutation: Sequence[int]
) -> StructureComparison:
    """`permutation[d]` is the compiler's dimension that our dimension d holds
    (`Model.permuted(seed)` uses `np.random.default_rng(seed).permutation`)."""
    true_dims = graph.sop_dims()
    by_dims = {dims: label for label, dims in true_dims.items()}
    matched, block_errors = {}, []
    for block in structure.blocks:
        if block.name == "one":
            continue
        label = by_dims.get(frozenset(permutation[d] for d in block.dims))
        if label is None:
            block_errors.append(f"block {block.name} is no SOp's dimensions")
        else:
            matched[block.name] = label
    for label in sorted(set(true_dims) - set(matched.values())):
        block_errors.append(f"SOp {label} was not recovered as a block")
    if matched.get(structure.output) != graph.output:
        block_errors.append("the output block is not the program's output")

    value = {d: graph.residual_values[permutation[d]] for d in range(len(permutation))}
    dataflow_errors, table_errors, unread = [], [], 0
    for component in structure.components:
        truth = graph.sops.get(matched.get(component.name))
        if truth is None:
            continue
        ours = tuple(matched.get(name) if name else None for name in component.inputs)
        unread += sum(name is None for name in ours) + (len(truth.inputs) - len(ours))
        if component.kind == "mlp":
            if truth.kind not in MLP_KINDS or not set(ours) <= set(truth.inputs):
                dataflow_errors.append(
                    f"{component.name} reads {ours}, compiler says {truth.kind} of {truth.inputs}"
                )
                continue
            if len(ours) == len(truth.inputs):
                table_errors += _mlp_errors(component, tables[component.name], truth, ours, value, structure)
        else:
            same_value = component.kind == "selector_width" or matched.get(component.value) == truth.value
            wiring = all(o is None or o == t for o, t in zip(ours, truth.inputs))
            if truth.kind != component.kind or not wiring or not same_value:
                dataflow_errors.append(
                    f"{component.name} reads {ours}, compiler says {truth.kind} of {truth.inputs}"
                )
                continue
            table_errors += _attention_errors(component, tables[component.name], truth, value)
    return StructureComparison(
        tuple(block_errors), tuple(dataflow_errors), tuple(table_errors), unread, matched
    )


def _mlp_errors(component, table: MlpTable, truth, ours, value, structure) -> list[str]:
    errors = []
    order = [ours.index(label) for label in truth.inputs]  # truth's (fst, snd) in our input order
    numerical = structure.block(component.name).encoding == "numerical"
    for key, out in table.rows.items():
        args = [
            value[k] if structure.block(name).encoding == "categorical" else k
            for name, k in zip(component.inputs, key)
        ]
        expected = apply_ignoring_errors(truth.fn, *[args[i] for i in order])
        if expected is None:
            continue  # tracr leaves values the function cannot compute out of its tables
        got = out if numerical else value[out]
        if numerical and abs(float(got) - float(expected)) > 1e-3 or not numerical and got != expected:
            errors.append(f"{component.name}{tuple(args)} = {got!r}, program gives {expected!r}")
    return errors


def _attention_errors(component, table: AttentionTable, truth, value) -> list[str]:
    errors = []
    predicate = truth.predicate
    for (q, k), chosen in table.selects.items():
        if q is None or k is None:
            continue
        if bool(apply_ignoring_errors(predicate, value[k], value[q])) != chosen:
            errors.append(f"{component.name} selects {chosen} for query {value[q]!r}, key {value[k]!r}")
    for source, target in (table.copies or {}).items():
        if value[source] != value[target]:
            errors.append(f"{component.name} copies {value[source]!r} to {value[target]!r}")
    for dim, width in (table.widths or {}).items():
        if value[dim] != width:
            errors.append(f"{component.name} decodes width {width} to value {value[dim]!r}")
    return errors
