"""Fast compilation of tracr RASP programs, and import of tracr's own models.

In: a tracr `rasp.SOp` plus vocab and max_seq_len (`compile_program`), or an
`AssembledTransformerModel` from tracr's stock compiler (`from_tracr`).
Out: a `Model`.

`compile_program` runs tracr's own stages (rasp_to_graph, basis_inference,
expr_to_craft_graph, craft_graph_to_model) and then lays the weights out
exactly as tracr's `assemble` does, but in numpy: tracr's assemble builds the
parameter shapes through a Haiku init, which spends seconds compiling XLA for
every new shape. The result equals `from_tracr(compile_rasp_to_model(...))`
array for array (the bridge tests check that).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from raspsynth.errors import CompileError, InputError, ModelFormatError
from raspsynth.tracr_bridge.interchange import model_from_arrays
from raspsynth.tracr_bridge.model import FORMAT_VERSION, Model, Token
from raspsynth.tracr_bridge.outputs import decode_logits

DEFAULT_BOS = "BOS"
DEFAULT_PAD = "compiler_pad"
# Beyond these, tracr's float64 craft matrices outgrow memory: refused up front
# with an InputError. tracr's SelectorWidth craft stage peaks near 8 * n^3
# bytes (measured: 228 MB at n = 300; make_length at n = 2000 was killed at
# 24 GB), so about 1 GB at 512.
MAX_SEQ_LEN = 512
MAX_VALUES = 20_000  # all SOps' value sets together, a bound on residual and MLP widths


@dataclasses.dataclass(frozen=True, eq=False)
class CraftCompilation:
    """What tracr's stages produce before assembly: the craft model and spaces.

    `residual_labels` are the compiler's names for residual dimensions. They
    exist for tests that check weight-reading against ground truth; a `Model`
    never carries them.
    """

    craft_model: object
    residual_space: object
    tokens_space: object
    indices_space: object
    output_space: object
    categorical_output: bool

    @property
    def residual_labels(self) -> list[str]:
        return [str(d) for d in self.residual_space.basis]


@contextlib.contextmanager
def _fast_tracr_internals() -> Iterator[None]:
    """Swap a few of tracr's slow generic routines for closed forms.

    tracr builds projections, parallel combinations of blocks and its
    SequenceMap MLPs through `Linear.from_action`, one basis direction at a
    time; sorts vector-space bases through a Python `__lt__`; and walks the
    graph for basis inference through `graph.reverse()`, which deep-copies
    every node. The replacements compute the same float64 matrices and the
    same orders (a 0/1 projection; the parts' matrices placed and added in
    the same order; the MLP's two layers written entry by entry; a key sort
    making the same comparisons; a reversed view), so compiled arrays stay
    bit-identical to stock tracr's, as the bridge tests check against
    unpatched tracr. Every swap is undone on exit: stock tracr, the tests'
    reference, never sees them.
    """
    import networkx as nx
    from tracr.craft import bases, transformers, vectorspace_fns
    from tracr.craft.chamber import categorical_mlp

    linear = vectorspace_fns.Linear

    def project(from_space, to_space):
        matrix = np.zeros((from_space.num_dims, to_space.num_dims))
        index = to_space.index_by_direction
        for i, direction in enumerate(from_space.basis):
            j = index.get(direction)
            if j is not None:
                matrix[i, j] = 1.0
        return linear(from_space, to_space, matrix)

    def combine_in_parallel(cls, fns):
        joint_in = bases.join_vector_spaces(*[fn.input_space for fn in fns])
        joint_out = bases.join_vector_spaces(*[fn.output_space for fn in fns])
        matrix = np.zeros((joint_in.num_dims, joint_out.num_dims))
        in_index, out_index = joint_in.index_by_direction, joint_out.index_by_direction
        for fn in fns:
            rows = [in_index[d] for d in fn.input_space.basis]
            cols = [out_index[d] for d in fn.output_space.basis]
            matrix[np.ix_(rows, cols)] += fn.matrix
        return cls(joint_in, joint_out, matrix)

    def sequence_map_categorical_mlp(
        input1_space,
        input2_space,
        output_space,
        operation,
        one_space=categorical_mlp._ONE_SPACE,
        hidden_name="__hidden__",
    ):
        # tracr's version, with both layers' matrices written directly.
        bases.ensure_dims(one_space, num_dims=1, name="one_space")
        if not set(input1_space.basis).isdisjoint(input2_space.basis):
            raise ValueError(
                "Input spaces to a SequenceMap must be disjoint. "
                "If input spaces are the same, use Map instead!"
            )
        input_space = bases.direct_sum(input1_space, input2_space, one_space)
        pairs = [(x, y) for x in input1_space.basis for y in input2_space.basis]
        hidden_dirs = [
            bases.BasisDirection(hidden_name, (x.name, x.value, y.name, y.value)) for x, y in pairs
        ]
        hidden_space = bases.VectorSpaceWithBasis(list(hidden_dirs))
        hidden_index = hidden_space.index_by_direction
        in_index = input_space.index_by_direction
        out_index = output_space.index_by_direction
        first = np.zeros((input_space.num_dims, hidden_space.num_dims))
        second = np.zeros((hidden_space.num_dims, output_space.num_dims))
        first[in_index[one_space.basis[0]], :] = -1.0
        for (x, y), direction in zip(pairs, hidden_dirs):
            h = hidden_index[direction]
            first[in_index[x], h] = 1.0
            first[in_index[y], h] = 1.0
            j = out_index.get(operation(x, y))
            if j is not None:
                second[h, j] = 1.0
        return transformers.MLP(
            linear(input_space, hidden_space, first), linear(hidden_space, output_space, second)
        )

    space_init = bases.VectorSpaceWithBasis.__post_init__

    def sorted_space_init(self):
        # Sorting by (name, value) keys makes the same tuple comparisons as
        # BasisDirection.__lt__, without a Python call per comparison; where a
        # comparison would need __lt__'s str fallback, use tracr's own sort.
        try:
            self.basis = sorted(self.basis, key=lambda d: (d.name, d.value))
        except TypeError:
            space_init(self)

    reverse = nx.DiGraph.reverse

    def reverse_view(self, copy=True):
        return reverse(self, copy=False)

    saved = (
        vectorspace_fns.project,
        linear.__dict__["combine_in_parallel"],
        categorical_mlp.sequence_map_categorical_mlp,
    )
    vectorspace_fns.project = project
    categorical_mlp.sequence_map_categorical_mlp = sequence_map_categorical_mlp
    bases.VectorSpaceWithBasis.__post_init__ = sorted_space_init
    linear.combine_in_parallel = classmethod(combine_in_parallel)
    nx.DiGraph.reverse = reverse_view
    try:
        yield
    finally:
        vectorspace_fns.project = saved[0]
        linear.combine_in_parallel = saved[1]
        categorical_mlp.sequence_map_categorical_mlp = saved[2]
        bases.VectorSpaceWithBasis.__post_init__ = space_init
        nx.DiGraph.reverse = reverse


def compile_craft(
    program: object,
    vocab: Iterable[Token],
    max_seq_len: int,
    bos: str = DEFAULT_BOS,
    pad: str = DEFAULT_PAD,
    mlp_exactness: int = 100,
) -> CraftCompilation:
    """Run tracr's compiler stages up to the craft model (no weights yet)."""
    from tracr.compiler import (
        basis_inference,
        craft_graph_to_model,
        expr_to_craft_graph,
        nodes,
        rasp_to_graph,
        validating,
    )
    from tracr.craft import bases
    from tracr.rasp import rasp

    try:
        vocab = set(vocab)
    except TypeError:
        raise InputError(f"vocab must be an iterable of hashable tokens; got {vocab!r}") from None
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len > MAX_SEQ_LEN:
        raise InputError(f"max_seq_len must be an integer of at most {MAX_SEQ_LEN}; got {max_seq_len!r}")
    if not isinstance(program, rasp.SOp):
        raise CompileError(f"expected a tracr rasp.SOp, got {type(program).__name__}")
    for name, token in (("BOS", bos), ("PAD", pad)):
        if token in vocab:
            raise CompileError(f"the {name} token {token!r} must not be in the vocab {vocab}")
    if max_seq_len < 1:
        raise CompileError(f"max_seq_len must be at least 1, got {max_seq_len}")
    unsupported = validating.static_validate(program)
    if unsupported:
        reasons = "; ".join(f"{u.expr.name}: {u.reason}" for u in unsupported)
        raise CompileError(f"tracr cannot compile this program: {reasons}")
    try:
        with _fast_tracr_internals():
            extracted = rasp_to_graph.extract_rasp_graph(program)
            graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
            if rasp.tokens.label not in graph.nodes:
                raise CompileError("the program does not use rasp.tokens, which tracr requires")
            basis_inference.infer_bases(graph, sink, vocab, max_seq_len)
            values = sum(len(graph.nodes[node].get(nodes.VALUE_SET) or ()) for node in graph.nodes)
            if values > MAX_VALUES:
                raise InputError(
                    f"the program's SOps take {values} values in all at vocab size {len(vocab)} and "
                    f"max_seq_len {max_seq_len} (at most {MAX_VALUES}): its weights would not fit in memory"
                )
            expr_to_craft_graph.add_craft_components_to_rasp_graph(
                graph,
                bos_dir=bases.BasisDirection(rasp.tokens.label, bos),
                mlp_exactness=mlp_exactness,
            )
            craft_model = craft_graph_to_model.craft_graph_to_model(graph, sources)
    except (CompileError, InputError):
        raise
    except Exception as err:  # tracr signals refusal with assorted exception types
        raise CompileError(f"tracr cannot compile this program: {type(err).__name__}: {err}") from err
    if not craft_model.blocks:
        raise CompileError("the program has no operation to compile (tracr needs at least one)")

    tokens_space = bases.VectorSpaceWithBasis.from_values(
        rasp.tokens.label, graph.nodes[rasp.tokens.label][nodes.VALUE_SET].union({bos, pad})
    )
    indices_space = bases.VectorSpaceWithBasis.from_values(rasp.indices.label, range(max_seq_len))
    output_space = bases.VectorSpaceWithBasis(sink[nodes.OUTPUT_BASIS])
    residual_space = bases.join_vector_spaces(
        craft_model.residual_space, tokens_space, indices_space, output_space
    )
    return CraftCompilation(
        craft_model=craft_model,
        residual_space=residual_space,
        tokens_space=tokens_space,
        indices_space=indices_space,
        output_space=output_space,
        categorical_output=rasp.is_categorical(sink[nodes.EXPR]),
    )


def compile_program(
    program: object,
    vocab: Iterable[Token],
    max_seq_len: int,
    bos: str = DEFAULT_BOS,
    causal: bool = False,
    mlp_exactness: int = 100,
    pad: str = DEFAULT_PAD,
) -> Model:
    """Compile a tracr RASP program to a `Model`, as tracr would, without Haiku.

    Raises CompileError, carrying tracr's reason, for programs tracr refuses
    or compiles to something no model file can hold.
    """
    compiled = compile_craft(program, vocab, max_seq_len, bos, pad, mlp_exactness)
    with _fast_tracr_internals():
        try:
            return assemble_model(compiled, max_seq_len=max_seq_len, bos=bos, pad=pad, causal=causal)
        except ModelFormatError as err:
            # tracr builds it, but no model file can hold it (a categorical
            # output with no values: a table that no input value reaches).
            raise CompileError(f"tracr's model of this program is no valid model: {err}") from None


def assemble_model(compiled: CraftCompilation, max_seq_len: int, bos: str, pad: str, causal: bool) -> Model:
    """Lay out the craft model's weights exactly as tracr's `assemble` does."""
    from tracr.compiler import assemble
    from tracr.craft import bases, transformers, vectorspace_fns

    craft_model, residual = compiled.craft_model, compiled.residual_space
    config, module_names = assemble._get_model_config_and_module_names(craft_model)
    d_model, heads, key_size = residual.num_dims, config.num_heads, config.key_size
    hidden = config.mlp_hidden_size
    for block in craft_model.blocks:
        if not isinstance(block, transformers.MLP):
            for head in block.as_multi().heads():
                if head.w_ov.matrix.shape[1] > key_size:
                    # tracr's assemble fails with a broadcast error here too.
                    raise CompileError(
                        "tracr cannot assemble this program: an attention head writes "
                        f"{head.w_ov.matrix.shape[1]} value dimensions but key_size is {key_size} "
                        "(tracr sizes value projections by the widest query/key space)"
                    )

    def project(space: object) -> np.ndarray:
        return vectorspace_fns.project(residual, space).matrix

    arrays: dict[str, np.ndarray] = {}
    for layer in range(config.num_layers):
        attn, mlp = f"transformer/layer_{layer}/attn", f"transformer/layer_{layer}/mlp"
        for proj in ("query", "key", "value"):
            arrays[f"{attn}/{proj}/w"] = np.zeros((d_model, heads * key_size))
            arrays[f"{attn}/{proj}/b"] = np.zeros(heads * key_size)
        arrays[f"{attn}/linear/w"] = np.zeros((heads * key_size, d_model))
        arrays[f"{attn}/linear/b"] = np.zeros(d_model)
        arrays[f"{mlp}/linear_1/w"] = np.zeros((d_model, hidden))
        arrays[f"{mlp}/linear_1/b"] = np.zeros(hidden)
        arrays[f"{mlp}/linear_2/w"] = np.zeros((hidden, d_model))
        arrays[f"{mlp}/linear_2/b"] = np.zeros(d_model)

    for name, block in zip(module_names, craft_model.blocks):
        if isinstance(block, transformers.MLP):
            width = block.fst.output_space.num_dims
            arrays[f"{name}/linear_1/w"][:, :width] = project(block.fst.input_space) @ block.fst.matrix
            arrays[f"{name}/linear_2/w"][:width, :] = block.snd.matrix @ project(block.snd.output_space).T
            continue
        for h, head in enumerate(block.as_multi().heads()):
            cols = slice(h * key_size, (h + 1) * key_size)
            qk_width = head.w_qk.matrix.shape[1]
            ov_width = head.w_ov.matrix.shape[1]
            query = arrays[f"{name}/query/w"][:, cols]
            query[:, :qk_width] = project(head.w_qk.left_space) @ head.w_qk.matrix
            arrays[f"{name}/key/w"][:, cols][:, :qk_width] = project(head.w_qk.right_space)
            value = arrays[f"{name}/value/w"][:, cols]
            value[:, :ov_width] = project(head.w_ov.input_space) @ head.w_ov.matrix
            arrays[f"{name}/linear/w"][cols][:ov_width, :] = project(head.w_ov.output_space).T

    tokens_to_res = vectorspace_fns.project(compiled.tokens_space, residual)
    one = bases.BasisDirection("one")
    if one in residual:
        one_to_res = vectorspace_fns.Linear.from_action(
            compiled.tokens_space, residual, lambda _: residual.vector_from_basis_direction(one)
        )
        tokens_to_res = vectorspace_fns.Linear.combine_in_parallel([tokens_to_res, one_to_res])
    arrays["token_embed/embeddings"] = tokens_to_res.matrix
    arrays["pos_embed/embeddings"] = np.concatenate(
        [np.zeros((1, d_model)), project(compiled.indices_space).T], axis=0
    )
    arrays["unembed"] = project(compiled.output_space)

    output_values = [d.value for d in compiled.output_space.basis]
    meta = {
        "format": FORMAT_VERSION,
        "input_vocab": [d.value for d in compiled.tokens_space.basis],
        "bos": bos,
        "pad": pad,
        "max_seq_len": max_seq_len,
        "output": (
            {"kind": "categorical", "values": output_values}
            if compiled.categorical_output
            else {"kind": "numerical"}
        ),
        "num_heads": heads,
        "num_layers": config.num_layers,
        "key_size": key_size,
        "mlp_hidden_size": hidden,
        "causal": causal,
    }
    return model_from_arrays({k: v.astype(np.float32) for k, v in arrays.items()}, meta)


def from_tracr(assembled: object) -> Model:
    """A `Model` from tracr's `AssembledTransformerModel`, without the program.

    The unembed is read exactly by applying the compiled model's own unembed
    module to an identity matrix inside a Haiku transform.
    """
    if not all(hasattr(assembled, name) for name in ("params", "input_encoder", "get_compiled_model")):
        raise InputError(
            "from_tracr takes tracr's AssembledTransformerModel (from compile_rasp_to_model); got "
            f"{type(assembled).__name__}"
        )
    import haiku as hk
    import jax.numpy as jnp
    from tracr.transformer import encoder

    params = {
        f"{module}/{name}": np.asarray(value)
        for module, group in assembled.params.items()
        for name, value in group.items()
    }
    d_model = params["token_embed/embeddings"].shape[1]

    @hk.without_apply_rng
    @hk.transform
    def read_unembed(identity: jnp.ndarray) -> jnp.ndarray:
        return assembled.get_compiled_model().unembed(identity, use_unembed_argmax=False)

    identity = jnp.eye(d_model)
    unembed = np.asarray(read_unembed.apply(read_unembed.init(None, identity), identity))
    params["unembed"] = unembed.reshape(d_model, -1)

    in_enc, out_enc = assembled.input_encoder, assembled.output_encoder
    config = assembled.model_config
    if isinstance(out_enc, encoder.CategoricalEncoder):
        output = {
            "kind": "categorical",
            "values": sorted(out_enc.encoding_map, key=out_enc.encoding_map.get),
        }
    else:
        output = {"kind": "numerical"}
    meta = {
        "format": FORMAT_VERSION,
        "input_vocab": sorted(in_enc.encoding_map, key=in_enc.encoding_map.get),
        "bos": in_enc.bos_token,
        "pad": in_enc.pad_token,
        "max_seq_len": in_enc._max_seq_len - 1,  # the encoder counts BOS
        "output": output,
        "num_heads": config.num_heads,
        "num_layers": config.num_layers,
        "key_size": config.key_size,
        "mlp_hidden_size": config.mlp_hidden_size,
        "causal": bool(config.causal),
    }
    return model_from_arrays(params, meta)


def tracr_outputs(
    assembled: object, seqs: Sequence[Sequence[Token]], mark_undefined: bool = True
) -> list[list]:
    """Decoded outputs of tracr's own `apply` (one sequence per call, tracr's
    XLA arithmetic), by the rule `Model.run` uses: logits are tracr's final
    residual times the unembed, undefined (None) at the float-noise floor.
    The reference that benchmarks and tests compare `Model.run` with."""
    model = from_tracr(assembled)
    scale = model.logit_scale if mark_undefined and not model.spec.numerical else None
    out = []
    for seq in seqs:
        residual = np.asarray(assembled.apply([model.spec.bos, *seq]).transformer_output)[0, 1:]
        out.append(decode_logits(residual @ model.unembed, model.spec.output_values, scale))
    return out
