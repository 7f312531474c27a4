"""Residual structure: the blocks and dataflow of a model, read off its weights.

In: a `Model` (residual dimensions in any order, no labels). Out: a
`Structure`: the residual's blocks (the dimensions holding one SOp: a one-hot
categorical block or a single numerical dimension, plus `tokens`, `indices`
and the constant `one`) and the components that read and write them, in
layer order. A component is an attention head computing an Aggregate, a
SelectorWidth (a head plus part of the next MLP), or one of the sub-MLPs an
MLP layer is made of. Raises `NotTracrStructured` when the weights do not have
tracr's layout.

How:
- tracr's embeddings are one-hot columns, so they name `one`, every token
  dimension and every index dimension outright.
- Every later dimension is first written by exactly one sublayer. A head
  writes one SOp. A SelectorWidth head reads only the BOS token as its value;
  the MLP after it turns the head's 1/(width+1) into the width.
- An MLP layer is tracr's parallel combination of sub-MLPs with disjoint
  hidden units. Hidden units that write a common dimension belong together
  ("atoms"). Atoms reading the same input blocks are split into SOps by
  probing the MLP alone with every combination of input values: a
  categorical SOp's dimensions fire exactly once per combination, so its
  atoms form an exact cover (of the combinations where it is defined, when
  no cover of all of them fits the readers). When several covers exist
  (two Maps of one input that split it alike), the one whose blocks
  downstream readers read whole is kept.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import numpy as np

from raspsynth.errors import NotTracrStructured
from raspsynth.symbolic.probing import (
    WEIGHT_EPS,
    ResidualObservations,
    counts_widths,
    mlp_response,
    nonzero_cols,
    nonzero_rows,
    residual_vectors,
    width_response,
)
from raspsynth.tracr_bridge.model import Model

# A probed output within this distance of 0 or 1 counts as a one-hot bit.
BIT_TOLERANCE = 1e-3
# Exact covers examined per group of atoms before picking the best one.
MAX_COVERS = 64


@dataclasses.dataclass(frozen=True)
class Block:
    """Residual dimensions holding one SOp (or `one`).

    `writer` is "embedding" or the name of the component that computes it
    (a component's output block carries the component's name). `values` gives
    each dimension's value where the embeddings fix it (tokens, indices).
    """

    name: str
    dims: tuple[int, ...]
    encoding: str  # "categorical" | "numerical"
    writer: str
    values: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Component:
    """One operation's weights: its kind, where it sits and which blocks it reads.

    `inputs` are (query, key) blocks for attention (None where the predicate
    reads nothing of that side) and the input blocks of a sub-MLP, in a fixed
    order. `value` is the block an Aggregate averages. A SelectorWidth's head
    writes `attention_dim`, which its MLP units turn into the width.
    """

    name: str
    kind: str  # "aggregate" | "selector_width" | "mlp"
    layer: int
    inputs: tuple[str | None, ...]
    value: str | None = None
    head: int | None = None
    attention_dim: int | None = None
    hidden_units: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Structure:
    """Blocks, components (in layer order) and the block the unembed reads."""

    blocks: tuple[Block, ...]
    components: tuple[Component, ...]
    output: str
    one_dim: int | None
    bos_dim: int
    pad_dim: int

    def block(self, name: str) -> Block:
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(name)

    def component(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    def value_dims(self, name: str) -> tuple[int, ...]:
        """A block's dimensions that carry SOp values: for tokens, all but BOS
        and PAD, which no operation reads as a value."""
        return _without_special(self.block(name).dims, self.bos_dim, self.pad_dim)


def read_structure(model: Model, bit_tolerance: float = BIT_TOLERANCE) -> Structure:
    """The model's blocks and dataflow; raises NotTracrStructured if it has none.
    `bit_tolerance`: how far an MLP output may be from 0 or 1 and still be a
    categorical value's bit (larger for a model lifted through interference,
    `basis.Lifted.bit_tolerance`)."""
    check_biases(model)
    reader = _StructureReader(model, bit_tolerance)
    for index, layer in enumerate(model.layers):
        reader.read_attention(index, layer)
        reader.read_mlp(index, layer)
    return reader.finish()


def check_biases(model: Model) -> None:
    """Raises NotTracrStructured where any layer has a nonzero bias."""
    # tracr's compiled layers have no biases; nonzero ones mean other weights.
    for index, layer in enumerate(model.layers):
        arrays = [layer.attn_output_b, layer.mlp_out_b]
        arrays += [getattr(h, f"{p}_b") for h in layer.heads for p in ("query", "key", "value")]
        if any(np.abs(a).max(initial=0.0) > WEIGHT_EPS for a in arrays):
            raise NotTracrStructured(f"layer {index} has nonzero biases, which tracr never compiles")


class _StructureReader:
    """Walks the layers in order, growing the known blocks."""

    def __init__(self, model: Model, bit_tolerance: float = BIT_TOLERANCE) -> None:
        self.model = model
        self.bit_tolerance = bit_tolerance
        self.blocks: dict[str, Block] = {}
        self.dim_block: dict[int, str] = {}
        self.components: list[Component] = []
        self.pending_widths: dict[int, Component] = {}  # attention dim -> SelectorWidth head
        self._read_embeddings()
        self.ports = _reader_ports(model, self.one_dim)
        self._observed: ResidualObservations | None = None

    # -- embeddings ---------------------------------------------------------
    def _read_embeddings(self) -> None:
        model, spec = self.model, self.model.spec
        tok, pos = model.token_embed, model.pos_embed
        tok_dims, pos_dims = nonzero_cols(tok), nonzero_cols(pos)
        if tok_dims & pos_dims:
            raise NotTracrStructured("some dimensions are set by both the token and the position embedding")
        ones, tokens = [], {}
        for d in sorted(tok_dims):
            rows = _one_hot_rows(tok[:, d], "token embedding")
            if len(rows) == len(spec.input_vocab):
                ones.append(d)
            elif len(rows) == 1:
                tokens[d] = spec.input_vocab[rows[0]]
            else:
                raise NotTracrStructured(f"token embedding column {d} marks several tokens")
        if len(ones) > 1:
            raise NotTracrStructured(f"expected at most one constant 'one' dimension, found {len(ones)}")
        if sorted(map(repr, tokens.values())) != sorted(map(repr, spec.input_vocab)):
            raise NotTracrStructured("the token embedding does not give each token its own dimension")
        indices = {}
        for d in sorted(pos_dims):
            rows = _one_hot_rows(pos[:, d], "position embedding")
            if len(rows) != 1 or rows[0] == 0:
                raise NotTracrStructured(f"position embedding column {d} is not one index")
            indices[d] = int(rows[0]) - 1  # row 0 is BOS's position
        if sorted(indices.values()) != list(range(spec.max_seq_len)):
            raise NotTracrStructured("the position embedding does not give each index its own dimension")
        # tracr adds `one` only when some component reads it.
        self.one_dim = ones[0] if ones else None
        self.bos_dim = next(d for d, t in tokens.items() if t == spec.bos)
        self.pad_dim = next(d for d, t in tokens.items() if t == spec.pad)
        token_dims = tuple(sorted(tokens, key=lambda d: spec.input_vocab.index(tokens[d])))
        token_values = tuple(tokens[d] for d in token_dims)
        index_dims = tuple(sorted(indices, key=indices.get))
        if self.one_dim is not None:
            self._add(Block("one", (self.one_dim,), "numerical", "embedding", (1,)))
        self._add(Block("tokens", token_dims, "categorical", "embedding", token_values))
        self._add(
            Block("indices", index_dims, "categorical", "embedding", tuple(indices[d] for d in index_dims))
        )

    def _add(self, block: Block) -> None:
        self.blocks[block.name] = block
        for d in block.dims:
            self.dim_block[d] = block.name

    def _blocks_of(self, dims: frozenset[int], where: str) -> set[str]:
        unknown = [d for d in dims if d not in self.dim_block]
        if unknown:
            raise NotTracrStructured(
                f"{where} reads dimensions {sorted(unknown)} before anything writes them"
            )
        return {self.dim_block[d] for d in dims}

    def _blocks_beside(self, dims: frozenset[int], here: frozenset[int]) -> int:
        """How many SOps other than `one` hold `dims` outside `here`, at least:
        the known blocks among them, and one more for any not known yet."""
        rest = dims - here
        known = {self.dim_block[d] for d in rest if d in self.dim_block} - {"one"}
        return len(known) + any(d not in self.dim_block for d in rest)

    def _single(self, names: set[str], where: str) -> str | None:
        if len(names) > 1:
            raise NotTracrStructured(f"{where} reads several SOps: {sorted(names)}")
        return next(iter(names), None)

    def _value_dims(self, name: str) -> tuple[int, ...]:
        return _without_special(self.blocks[name].dims, self.bos_dim, self.pad_dim)

    # -- attention ----------------------------------------------------------
    def read_attention(self, index: int, layer) -> None:
        for h, head in enumerate(layer.heads):
            writes = nonzero_cols(head.output_w)
            if not writes:
                continue
            name = f"L{index}.head{h}"
            if writes & self.dim_block.keys():
                raise NotTracrStructured(f"{name} overwrites dimensions another component wrote")
            query_reads = nonzero_rows(head.query_w) - {self.one_dim}
            query = self._single(self._blocks_of(query_reads, name) - {"one"}, f"{name} query")
            key_reads = nonzero_rows(head.key_w) - {self.bos_dim}
            key = self._single(self._blocks_of(key_reads, name) - {"one"}, f"{name} key")
            value_reads = nonzero_rows(head.value_w @ head.output_w)
            if value_reads == {self.bos_dim}:
                if len(writes) != 1:
                    raise NotTracrStructured(
                        f"{name} looks like a SelectorWidth head but writes {len(writes)} dims"
                    )
                (dim,) = writes
                self.pending_widths[dim] = Component(
                    f"L{index}.width{h}", "selector_width", index, (query, key), head=h, attention_dim=dim
                )
                self.dim_block[dim] = f"L{index}.width{h}.attention"
                continue
            value = self._single(self._blocks_of(value_reads, name), f"{name} value")
            if value is None or value == "one":
                raise NotTracrStructured(f"{name} aggregates no SOp")
            encoding = self.blocks[value].encoding
            if encoding == "numerical" and len(writes) != 1:
                raise NotTracrStructured(f"{name} averages a numerical SOp into {len(writes)} dims")
            self.components.append(Component(name, "aggregate", index, (query, key), value=value, head=h))
            self._add(Block(name, tuple(sorted(writes)), encoding, name))

    # -- MLPs ---------------------------------------------------------------
    def read_mlp(self, index: int, layer) -> None:
        reads = np.abs(layer.mlp_in_w) > WEIGHT_EPS  # [D, M]
        writes = np.abs(layer.mlp_out_w) > WEIGHT_EPS  # [M, D]
        units = [u for u in range(writes.shape[0]) if writes[u].any()]
        # tracr's SelectorWidths share one unit that reads BOS and clears their
        # outputs at the BOS position; it carries no function of its own.
        bos_cleaners = [u for u in units if set(np.nonzero(reads[:, u])[0]) == {self.bos_dim}]
        units = [u for u in units if u not in bos_cleaners]
        # A SelectorWidth's MLP units read or write its head's dimension, or
        # write a dimension such a unit writes (tracr's discretising "start" unit).
        width_units: dict[int, list[int]] = {dim: [] for dim in self.pending_widths}
        atoms = []
        for atom in _atoms(units, writes):
            touched = set(np.nonzero(reads[:, list(atom)].any(axis=1) | writes[list(atom)].any(axis=0))[0])
            touched &= width_units.keys()
            if len(touched) > 1:
                raise NotTracrStructured(f"MLP {index} mixes two SelectorWidths in its hidden units")
            if touched:
                width_units[touched.pop()].extend(atom)
            else:
                atoms.append(atom)
        for dim, members in width_units.items():
            cleaners = [u for u in bos_cleaners if writes[u, dim]]
            self._finish_width(layer, self.pending_widths[dim], members, cleaners, writes)
        self.pending_widths = {}
        groups: dict[tuple[str, ...], list[tuple[int, ...]]] = {}
        for atom in atoms:
            atom_writes = frozenset(np.nonzero(writes[list(atom)].any(axis=0))[0].tolist())
            if atom_writes & self.dim_block.keys():
                raise NotTracrStructured(f"MLP {index} overwrites dimensions another component wrote")
            atom_reads = frozenset(np.nonzero(reads[:, list(atom)].any(axis=1))[0].tolist())
            inputs = tuple(sorted(self._blocks_of(atom_reads, f"MLP {index}") - {"one"}))
            if len(inputs) > 2:
                raise NotTracrStructured(f"MLP {index} has hidden units reading {len(inputs)} SOps")
            groups.setdefault(inputs, []).append(atom)
        parts = []
        for inputs, group_atoms in groups.items():
            parts.extend(self._split_atoms(index, layer, inputs, group_atoms, writes))
        # Name parts in an order that does not depend on the residual's layout.
        parts.sort(key=lambda part: part[0])
        for k, (_, inputs, units_, dims, encoding) in enumerate(parts):
            name = f"L{index}.mlp{k}"
            self.components.append(Component(name, "mlp", index, inputs, hidden_units=units_))
            self._add(Block(name, dims, encoding, name))

    def _finish_width(self, layer, head: Component, members: list[int], cleaners: list[int], writes) -> None:
        out = frozenset(np.nonzero(writes[members].any(axis=0))[0].tolist()) - {head.attention_dim}
        if not out or out & self.dim_block.keys():
            raise NotTracrStructured(f"{head.name} has no MLP writing its width")
        encoding = (
            "categorical" if len(out) > 1 or not self._writes_width(layer, head, min(out)) else "numerical"
        )
        component = dataclasses.replace(head, hidden_units=tuple(sorted(members + cleaners)))
        self.components.append(component)
        self._add(Block(head.name, tuple(sorted(out)), encoding, head.name))

    def _writes_width(self, layer, head: Component, dim: int) -> bool:
        """Whether the SelectorWidth's MLP writes the width w itself into `dim`
        (a numerical SelectorWidth), not 1 at the widths of one value: a
        categorical one of which a projection kept one value (the others
        were never held, and their directions are gone)."""
        response = width_response(
            layer, self.model.d_model, self.one_dim, head.attention_dim, self.model.spec.max_seq_len
        )
        return counts_widths(response[:, dim])

    def _observations(self) -> ResidualObservations:
        if self._observed is None:
            self._observed = ResidualObservations(self.model)
        return self._observed

    def input_combinations(self, inputs: tuple[str, ...]) -> list[dict[int, float]]:
        """Residual assignments for every combination of the inputs' values."""
        choices = []
        for name in inputs:
            block = self.blocks[name]
            if block.encoding == "categorical":
                choices.append([{d: 1.0} for d in self._value_dims(name)])
            else:
                dim = block.dims[0]
                choices.append([{dim: v} for v in self._observations().values(dim)])
        rows = []
        for combo in itertools.product(*choices):
            row = {} if self.one_dim is None else {self.one_dim: 1.0}
            for part in combo:
                row.update(part)
            rows.append(row)
        return rows

    def _split_atoms(self, index, layer, inputs, atoms, writes):
        """Group atoms with the same inputs into SOps: (sort key, inputs, units, dims, encoding)."""
        rows = self.input_combinations(inputs)
        response = mlp_response(layer, residual_vectors(self.model.d_model, rows))
        atom_dims = {
            atom: tuple(sorted(np.nonzero(writes[list(atom)].any(axis=0))[0].tolist())) for atom in atoms
        }
        fires: dict[tuple[int, ...], frozenset[int]] = {}
        for atom, dims in atom_dims.items():
            values = response[:, list(dims)]
            bits = np.abs(values - np.round(values)) < self.bit_tolerance
            binary = bits.all() and set(np.round(values).ravel().tolist()) <= {0.0, 1.0}
            if binary and (np.round(values).sum(axis=1) <= 1).all():
                fires[atom] = frozenset(np.nonzero(np.round(values).sum(axis=1))[0].tolist())
            elif len(dims) != 1:
                raise NotTracrStructured(f"MLP {index} writes a multi-dimensional non-one-hot output")
        # tracr's only SequenceMap of categorical SOps is categorical.
        sequence_map = len(inputs) == 2 and all(self.blocks[n].encoding == "categorical" for n in inputs)
        narrow = {atom for atom, dims in atom_dims.items() if len(dims) == 1}  # one dimension each
        single = set() if sequence_map else narrow
        left_out = "numerical"
        every_row = frozenset(range(len(rows)))
        covers = [(cover, False) for cover in exact_covers(fires, every_row, single)]
        # Rows where no atom fires are input combinations on which a function
        # is undefined (tracr writes nothing for a value outside the value
        # set, e.g. `x if x != y else None`), or under a projection whose
        # value no state holds, its direction lost. Covers of the other rows
        # are a second choice, and only with groups of several dimensions
        # (one dimension firing on some rows reads as a numerical 0/1) or in
        # a SequenceMap.
        live = frozenset().union(*fires.values()) if fires else every_row
        if live != every_row:
            least = 1 if sequence_map else 2
            covers += [(cover, True) for cover in exact_covers(fires, live, single, least=least)]
        if not covers and sequence_map:
            # Last, a dimension left out of the groups: a SequenceMap no state
            # holds any other value of (a projection dropped their directions).
            covers = [(cover, False) for cover in exact_covers(fires, every_row, narrow)]
            left_out = "categorical"
        if not covers:
            raise NotTracrStructured(f"MLP {index}: its outputs do not split into one-hot SOps")

        # What each sub-MLP reads besides these atoms, whichever cover is chosen.
        here = frozenset().union(*atom_dims.values())
        beside = [self._blocks_beside(port, here) for port in self.ports.sub_mlp]

        def cost(choice):
            # Value reads and the unembed read one whole SOp, queries and keys
            # part of one, units reading `one` one dimension of each: a cover
            # that contradicts them is wrong.
            # Then prefer covers of every row, one-hot groups, and covers that
            # every other reader touches in as few blocks as possible.
            (groups, numerical), partial = choice
            blocks = [frozenset(d for a in g for d in atom_dims[a]) for g in groups]
            blocks += [frozenset(atom_dims[a]) for a in numerical]
            split = sum(bool(port & b) and not b <= port for port in self.ports.whole for b in blocks)
            split += sum(
                max(0, sum(bool(port & b) for b in blocks) - 1)
                for port in self.ports.whole + self.ports.select
            )
            split += sum(len(port & b) > 1 for port in self.ports.one_hot for b in blocks)
            # A sub-MLP reads at most two SOps: those known already, these,
            # and at least one more where it reads dimensions of neither
            # (written later, or by another part of this MLP).
            split += sum(
                max(0, n + sum(bool(port & b) for b in blocks) - 2)
                for port, n in zip(self.ports.sub_mlp, beside)
            )
            touched = sum(sum(bool(port & b) for b in blocks[: len(groups)]) for port in self.ports.partial)
            return (split, partial, len(numerical), touched)

        (groups, numerical), _ = min(covers, key=cost)
        kinds = [(g, "categorical") for g in groups] + [((a,), left_out) for a in numerical]
        kinds += [((a,), "numerical") for a in atoms if a not in fires]
        parts = []
        for group, encoding in kinds:
            dims = tuple(sorted(d for a in group for d in atom_dims[a]))
            units = tuple(sorted(u for a in group for u in a))
            signature = tuple(sorted(tuple(np.round(response[:, d], 4).tolist()) for d in dims))
            parts.append(((inputs, encoding, signature), inputs, units, dims, encoding))
        return parts

    def finish(self) -> Structure:
        if self.pending_widths:
            raise NotTracrStructured("a SelectorWidth head has no MLP after it")
        out_dims = nonzero_rows(self.model.unembed)
        output = self._single(self._blocks_of(out_dims, "the unembed"), "the unembed")
        # tracr's unembed reads every value of its SOp; under a projection a
        # value no state holds has no direction left to read.
        if (
            output is None
            or not out_dims <= set(self.blocks[output].dims)
            or self.blocks[output].writer == "embedding"
        ):
            raise NotTracrStructured("the unembed does not read exactly one computed SOp")
        block = self.blocks[output]
        if self.model.spec.numerical and block.encoding == "categorical":
            # A constant single-dimension output looks one-hot; the spec says otherwise.
            if len(block.dims) != 1:
                raise NotTracrStructured("a numerical output is read from a one-hot block")
            self.blocks[output] = dataclasses.replace(block, encoding="numerical")
        self._numerical_through_means()
        return Structure(
            tuple(self.blocks.values()),
            tuple(self.components),
            output,
            self.one_dim,
            self.bos_dim,
            self.pad_dim,
        )

    def _numerical_through_means(self) -> None:
        """A constant SOp is one dimension that is always 1, one-hot or not.
        One averaged into a numerical SOp, or combined with another into a
        number (a LinearSequenceMap), was numerical: tracr mixes like with like."""
        changed = True
        while changed:
            changed = False
            for component in self.components:
                if self.blocks[component.name].encoding != "numerical":
                    continue
                if component.kind == "aggregate":
                    numerical_inputs = [component.value]
                elif component.kind == "mlp" and len(component.inputs) == 2:
                    numerical_inputs = list(component.inputs)  # only LinearSequenceMap mixes to a number
                else:
                    continue
                for name in numerical_inputs:
                    value = self.blocks[name]
                    if (
                        value.encoding == "categorical"
                        and len(value.dims) == 1
                        and value.writer != "embedding"
                    ):
                        self.blocks[value.name] = dataclasses.replace(value, encoding="numerical")
                        changed = True


def _without_special(dims: tuple[int, ...], bos_dim: int, pad_dim: int) -> tuple[int, ...]:
    return tuple(d for d in dims if d not in (bos_dim, pad_dim))


def _one_hot_rows(column: np.ndarray, where: str) -> np.ndarray:
    if not np.isin(column, (0.0, 1.0)).all():
        raise NotTracrStructured(f"the {where} is not made of 0/1 one-hot columns")
    return np.nonzero(column)[0]


@dataclasses.dataclass(frozen=True)
class _ReaderPorts:
    """Sets of dimensions read together, by what tracr's readers read."""

    whole: list  # value reads and the unembed: one whole SOp each
    partial: list  # query and key reads and MLP hidden units: part of one
    one_hot: list  # units reading `one` (SequenceMap ANDs, discretisers), less it: one dimension of each SOp
    sub_mlp: list  # what each sub-MLP's units (`_atoms`) read, less `one`: at most two SOps
    select: list  # query and key reads: one SOp, besides `one` and BOS (no new block's)


def _reader_ports(model: Model, one_dim: int | None) -> _ReaderPorts:
    """Every reader's port in `model`."""
    whole = [nonzero_rows(model.unembed)]
    partial, one_hot, sub_mlp, select = [], [], [], []
    for layer in model.layers:
        for head in layer.heads:
            whole.append(nonzero_rows(head.value_w @ head.output_w))
            query_key = [nonzero_rows(head.query_w), nonzero_rows(head.key_w)]
            partial += query_key
            select += query_key
        reads = np.abs(layer.mlp_in_w) > WEIGHT_EPS
        for col in reads.T:
            unit = frozenset(np.nonzero(col)[0].tolist())
            partial.append(unit)
            if one_dim is not None and one_dim in unit:
                one_hot.append(unit - {one_dim})
        writes = np.abs(layer.mlp_out_w) > WEIGHT_EPS
        for atom in _atoms([u for u in range(len(writes)) if writes[u].any()], writes):
            sub_mlp.append(frozenset(np.nonzero(reads[:, list(atom)].any(axis=1))[0].tolist()) - {one_dim})
    return _ReaderPorts(
        [p for p in whole if p],
        [p for p in partial if p],
        one_hot,
        [p for p in sub_mlp if p],
        [p for p in select if p],
    )


def _atoms(units: list[int], writes: np.ndarray) -> list[tuple[int, ...]]:
    """Hidden units joined when they write a common dimension (union-find)."""
    parent = {u: u for u in units}

    def find(u: int) -> int:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    owner: dict[int, int] = {}
    for u in units:
        for d in np.nonzero(writes[u])[0].tolist():
            if d in owner:
                parent[find(u)] = find(owner[d])
            else:
                owner[d] = u
    members: dict[int, list[int]] = {}
    for u in units:
        members.setdefault(find(u), []).append(u)
    return [tuple(sorted(m)) for m in members.values()]


def exact_covers(fires: dict, rows: frozenset, single: set, least: int = 1) -> list[tuple[list, list]]:
    """Ways to split one-hot atoms into groups of at least `least` atoms that
    fire exactly once per row of `rows`, leaving single-dimension atoms out
    as numerical SOps: [(groups, numerical)]."""
    atoms = sorted(fires)
    covers: list[tuple[list, list]] = []

    def complete(group: tuple, covered: frozenset, candidates: list) -> Iterator[tuple]:
        if covered == rows:
            if len(group) >= least:
                yield group
            return
        row = min(rows - covered)
        for atom in candidates:
            if row in fires[atom] and not fires[atom] & covered:
                rest = [c for c in candidates if c != atom]
                yield from complete(group + (atom,), covered | fires[atom], rest)

    def assign(remaining: list, groups: list, numerical: list) -> None:
        if len(covers) >= MAX_COVERS:
            return
        if not remaining:
            covers.append((groups, numerical))
            return
        first, rest = remaining[0], remaining[1:]
        if fires[first]:
            for group in complete((first,), fires[first], rest):
                assign([a for a in rest if a not in group], groups + [group], numerical)
        if first in single:
            assign(rest, groups, numerical + [first])

    assign(atoms, [], [])
    return covers
