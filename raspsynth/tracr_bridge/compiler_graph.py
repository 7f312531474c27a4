"""The compiler's own account of a model: what each residual dimension holds
and which SOps each operation reads.

In: a tracr RASP program and the spec it is compiled with. Out: a
`CompilerGraph` with tracr's residual labels (in the model's dimension order)
and, per SOp label, its kind, encoding, inputs and predicate. This is ground
truth for tests and benchmarks of weight reading; synthesis never sees it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable

from raspsynth.tracr_bridge.compile import compile_craft


@dataclasses.dataclass(frozen=True)
class CompiledSop:
    """One SOp as tracr compiled it. `inputs` are input labels: (queries, keys)
    for Aggregate and SelectorWidth, whose averaged SOp is `value`."""

    label: str
    kind: str  # tokens | indices | map | sequence_map | linear_sequence_map | aggregate | selector_width
    encoding: str
    inputs: tuple[str, ...] = ()
    value: str | None = None
    predicate: Callable | None = None  # a Select's, called (key, query): a Comparison or a lambda
    fn: Callable | None = None  # a Map's or SequenceMap's function


@dataclasses.dataclass(frozen=True)
class CompilerGraph:
    residual_labels: tuple[str, ...]
    residual_values: tuple[Hashable, ...]  # each dimension's value (None for numerical ones)
    sops: dict[str, CompiledSop]
    output: str

    def sop_dims(self) -> dict[str, frozenset[int]]:
        """SOp label -> its residual dimensions (BOS and PAD included for tokens)."""
        dims: dict[str, set[int]] = {}
        for d, label in enumerate(self.residual_labels):
            name = label.split(":", 1)[0]
            if name in self.sops:
                dims.setdefault(name, set()).add(d)
        return {name: frozenset(ds) for name, ds in dims.items()}


def compiler_graph(program: object, vocab: Iterable[Hashable], max_seq_len: int) -> CompilerGraph:
    """Labels and dataflow of `program` compiled as `compile_program` compiles it."""
    from tracr.rasp import rasp

    compiled = compile_craft(program, vocab, max_seq_len)
    sops: dict[str, CompiledSop] = {}

    def encoding(expr) -> str:
        return "categorical" if rasp.is_categorical(expr) else "numerical"

    def visit(expr) -> None:
        if expr.label in sops:
            return
        if expr is rasp.tokens or expr is rasp.indices or expr.label in ("tokens", "indices"):
            sops[expr.label] = CompiledSop(expr.label, expr.label, "categorical")
            return
        if isinstance(expr, rasp.LinearSequenceMap):
            kind, children = "linear_sequence_map", (expr.fst, expr.snd)
        elif isinstance(expr, rasp.SequenceMap):
            kind, children = "sequence_map", (expr.fst, expr.snd)
        elif isinstance(expr, rasp.Map):
            kind, children = "map", (expr.inner,)
        elif isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
            selector = expr.selector
            kind = "aggregate" if isinstance(expr, rasp.Aggregate) else "selector_width"
            children = (selector.queries, selector.keys)
            value = expr.sop if kind == "aggregate" else None
            for child in children + ((value,) if value is not None else ()):
                visit(child)
            sops[expr.label] = CompiledSop(
                expr.label,
                kind,
                encoding(expr),
                tuple(c.label for c in children),
                value.label if value is not None else None,
                selector.predicate,
            )
            return
        else:
            raise TypeError(f"unexpected RASP expression {expr!r}")
        for child in children:
            visit(child)
        sops[expr.label] = CompiledSop(
            expr.label, kind, encoding(expr), tuple(c.label for c in children), fn=expr.f
        )

    visit(program)
    for source in ("tokens", "indices"):  # tracr embeds both even when unused
        sops.setdefault(source, CompiledSop(source, source, "categorical"))
    values = tuple(d.value for d in compiled.residual_space.basis)
    return CompilerGraph(tuple(compiled.residual_labels), values, sops, program.label)


def compiled_sublayers(program: object, vocab: Iterable[Hashable], max_seq_len: int) -> dict[str, int]:
    """SOp name -> the sublayer tracr writes it in: 2L for layer L's
    attention, 2L + 1 for its MLP (a SelectorWidth's is its MLP's), read off
    tracr's own layer allocation for `program` compiled with this spec.

    Keys are the names `.named()` gave the expressions (tracr's labels add
    a unique id to a name used before), so they should be unique in
    `program`, as `to_rasp` makes them."""
    from tracr.compiler import assemble
    from tracr.craft import transformers

    compiled = compile_craft(program, vocab, max_seq_len)
    _, module_names = assemble._get_model_config_and_module_names(compiled.craft_model)
    names, stack = {}, [program]
    while stack:
        expr = stack.pop()
        if expr.label not in names:
            names[expr.label] = expr.name
            stack.extend(expr.children)
    placed: dict[str, int] = {}
    for name, block in zip(module_names, compiled.craft_model.blocks):
        layer = int(name.split("/")[1].removeprefix("layer_"))
        if isinstance(block, transformers.MLP):
            spaces, sub = [block.snd.output_space], 2 * layer + 1
        else:
            spaces, sub = [head.w_ov.output_space for head in block.as_multi().heads()], 2 * layer
        for space in spaces:
            for direction in space.basis:
                key = names.get(direction.name, direction.name)
                placed[key] = max(placed.get(key, -1), sub)
    return placed
