"""Random RASP programs from a documented, configurable distribution.

In: a seeded `numpy.random.Generator` and a `SamplerConfig`. Out: a
`SampledProgram` (program IR, vocab, max_seq_len) that tracr accepts.

The distribution, step by step:
1. vocab size V and max_seq_len N are drawn uniformly from the config's
   ranges; the vocab is {0, ..., V-1}, or with probability
   `p_string_tokens` V strings (the first V letters, or V drawn from
   letters and short words), as human-written programs often have.
2. A target length L (ops that produce values; selects are not counted) is
   drawn uniformly from [min_ops, max_ops].
3. Ops are added one at a time until L are live. Each op's kind is drawn with
   `kind_weights` among the kinds whose inputs exist; its first operand is the
   newest value with probability `p_chain` (so programs are deep rather than
   wide), otherwise uniform among suitable earlier values. The program's
   output is the last op; dead ops are dropped.
4. Kinds and tracr's constraints they respect:
   - map: a library function on a categorical value (categorical output), or
     a boolean library function (numerical 0/1 output, to feed a mean); with
     probability `p_numerical_input_map` a boolean function of a numerical
     value, which tracr compiles imprecisely (`data.sampling` checks those
     on every input);
   - sequence_map: a binary library function of two distinct categorical values;
   - linear_sequence_map: two numerical values, integer coefficients (by default in [-2, 2]);
   - numerical aggregate: mean of a 0/1-valued numerical value under a
     Select with any of the 8 comparisons;
   - categorical aggregate: copy of a categorical value with at most
     max_seq_len values under Select(indices, q, EQ), or with probability
     `p_custom_predicate` a shift Select(indices, indices, q == k + c); both
     select at most one position, so tracr's compilation is exact (tracr
     cannot average categorical values, nor assemble value spaces wider than
     the query/key space);
   - selector_width: width of a Select with any comparison.
   Numerical aggregates and selector widths use, with probability
   `p_custom_predicate`, a library predicate over positions instead
   (Select(indices, indices, abs(k - q) <= 1), ...).
   Values that are strings (from string tokens) take the ops that are
   defined on them: a Map is a table (membership in a random subset, a
   random code in small integers, or a relabelling into the vocab), a
   SequenceMap pairs two string values with a comparison, min or max,
   Selects compare strings with strings (lexicographic order), and
   categorical aggregates copy them.
   Value sets are kept small (at most `max_values` values, all within
   [-value_bound, value_bound]) so MLPs stay small.
5. Programs that are trivial on a sample of inputs are rejected and redrawn:
   constant output, output equal to the tokens, or mostly undefined (None).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

import numpy as np

from raspsynth.errors import InputError
from raspsynth.program.canonical import live_ops, op_value_set
from raspsynth.program.evaluate import evaluate
from raspsynth.program.functions import LIBRARY
from raspsynth.program.ir import COMPARISONS, Fn, Op, Program, library_predicates

CHECK_INPUTS = 32  # random inputs on which each sampled program is evaluated

DEFAULT_KIND_WEIGHTS = (
    ("map", 3.0),
    ("sequence_map", 2.0),
    ("categorical_aggregate", 1.5),
    ("numerical_aggregate", 1.5),
    ("selector_width", 1.0),
    ("linear_sequence_map", 0.7),
)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """The sampled distribution; defaults are the project's default distribution."""

    min_ops: int = 1
    max_ops: int = 10
    vocab_size: tuple[int, int] = (5, 5)  # inclusive range
    max_seq_len: tuple[int, int] = (5, 5)  # inclusive range
    kind_weights: tuple[tuple[str, float], ...] = DEFAULT_KIND_WEIGHTS
    p_chain: float = 0.6
    # Maps reading a numerical value compile to tracr's discretising MLPs,
    # which are wrong on some inputs (e.g. `x != 1` over means near 1): the
    # data pipeline checks such programs on every input and drops miscompiles.
    p_numerical_input_map: float = 0.03
    # A Select over positions with a library predicate (`q == k + 1`, a window)
    # instead of a comparison, as people write shifts and previous-token heads.
    p_custom_predicate: float = 0.15
    # A LinearSequenceMap's coefficients are drawn from these.
    coefficients: tuple[int, ...] = (-2, -1, 1, 2)
    # The tokens are strings (`"a"`, `"b"`, ... or words) in this share of programs.
    p_string_tokens: float = 0.0
    max_values: int = 12
    value_bound: int = 20
    max_attempts: int = 200

    def __post_init__(self) -> None:
        def integer(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not (integer(self.min_ops) and integer(self.max_ops) and 1 <= self.min_ops <= self.max_ops):
            raise InputError(
                f"min_ops and max_ops must be integers with 1 <= min_ops <= max_ops; got "
                f"{self.min_ops!r}, {self.max_ops!r}"
            )
        if not (isinstance(self.p_string_tokens, int | float) and 0 <= self.p_string_tokens <= 1):
            raise InputError(f"p_string_tokens must be a probability in [0, 1]; got {self.p_string_tokens!r}")
        if not (
            isinstance(self.coefficients, tuple)
            and self.coefficients
            and all(integer(c) and c != 0 for c in self.coefficients)
        ):
            raise InputError(
                f"coefficients must be a non-empty tuple of non-zero integers; got {self.coefficients!r}"
            )
        for name, least in (("vocab_size", 2), ("max_seq_len", 1)):
            low_high = getattr(self, name)
            if not (
                isinstance(low_high, tuple)
                and len(low_high) == 2
                and all(integer(v) for v in low_high)
                and least <= low_high[0] <= low_high[1]
            ):
                raise InputError(
                    f"{name} must be an inclusive range (low, high) of integers with "
                    f"{least} <= low <= high; got {low_high!r}"
                )


@dataclasses.dataclass(frozen=True)
class SampledProgram:
    """A program with its compile spec, and the random inputs on which the
    sampler evaluated it (RASP semantics, None where undefined) to reject
    trivial programs; the data pipeline checks the compiled model on them."""

    program: Program
    vocab: frozenset
    max_seq_len: int
    check_inputs: tuple[tuple[int, ...], ...] = ()
    check_outputs: tuple[tuple[object, ...], ...] = dataclasses.field(default=(), compare=False)


class SamplingError(RuntimeError):
    """The sampler found no acceptable program within its attempt budget."""


@dataclasses.dataclass
class _Value:
    name: str
    encoding: str
    values: frozenset


def sample_program(rng: np.random.Generator, config: SamplerConfig = SamplerConfig()) -> SampledProgram:
    """Draw one program; see the module docstring for the distribution."""
    for _ in range(config.max_attempts):
        vocab_size = int(rng.integers(config.vocab_size[0], config.vocab_size[1] + 1))
        max_seq_len = int(rng.integers(config.max_seq_len[0], config.max_seq_len[1] + 1))
        target = int(rng.integers(config.min_ops, config.max_ops + 1))
        # Drawn only when strings are possible, so integer-token streams stay as they were.
        strings = config.p_string_tokens > 0 and rng.random() < config.p_string_tokens
        words = _string_vocab(rng, vocab_size) if strings else list(range(vocab_size))
        vocab = frozenset(words)
        program = _grow(rng, config, vocab, max_seq_len, target)
        if program is None:
            continue
        lengths = rng.integers(1, max_seq_len + 1, size=CHECK_INPUTS).tolist()
        tokens = rng.integers(vocab_size, size=(CHECK_INPUTS, max_seq_len)).tolist()
        inputs = [tuple(words[t] for t in row[:n]) for row, n in zip(tokens, lengths)]
        outputs = evaluate(program, inputs)
        if not is_trivial(program, inputs, outputs):
            return SampledProgram(program, vocab, max_seq_len, tuple(inputs), tuple(map(tuple, outputs)))
    raise SamplingError(f"no non-trivial program in {config.max_attempts} attempts")


_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
_WORDS = ("the", "cat", "dog", "sat", "on", "mat", "red", "blue", "yes", "no", "x", "y", "z", "ab", "ba")


def _string_vocab(rng: np.random.Generator, size: int) -> list[str]:
    """`size` distinct strings, sorted: the first letters of the alphabet
    (half the time) or a draw from letters and short words."""
    if rng.random() < 0.5:
        return list(_LETTERS[:size])
    pool = sorted(set(_LETTERS + _WORDS))
    return sorted(pool[i] for i in rng.choice(len(pool), size=size, replace=False))


def is_trivial(program: Program, inputs: list[list[Hashable]], outputs: list[list[object]]) -> bool:
    """Constant output, output equal to the input, or mostly undefined (None)."""
    flat = [v for row in outputs for v in row]
    if sum(v is None for v in flat) > len(flat) / 2:
        return True
    if len({repr(v) for v in flat}) <= 1:
        return True
    return all(list(out) == list(inp) for out, inp in zip(outputs, inputs))


def _grow(
    rng: np.random.Generator, config: SamplerConfig, vocab: frozenset, max_seq_len: int, target: int
) -> Program | None:
    pool = [
        _Value("tokens", "categorical", vocab),
        _Value("indices", "categorical", frozenset(range(max_seq_len))),
    ]
    ops: list[Op] = []
    kinds, weights = zip(*config.kind_weights)
    probabilities = np.array(weights) / sum(weights)
    for _ in range(target * 6):  # bounded: some draws are refused
        if ops and _live_sops(ops) >= target:
            break
        kind = kinds[int(rng.choice(len(kinds), p=probabilities))]
        new_ops = _BUILDERS[kind](rng, config, pool, max_seq_len, f"v{len(ops)}")
        if not new_ops:
            continue
        sets = {v.name: v.values for v in pool}
        for op in new_ops:
            sets[op.name] = op_value_set(op, [sets[i] for i in op.inputs], max_seq_len)
        result = new_ops[-1]
        values = sets[result.name]
        if not values or len(values) > config.max_values:
            continue
        if any(isinstance(v, (int, float)) and abs(v) > config.value_bound for v in values):
            continue
        # Renumber so names stay v0, v1, ... in program order.
        renamed = {}
        for op in new_ops:
            renamed[op.name] = f"v{len(ops)}"
            ops.append(
                dataclasses.replace(
                    op, name=renamed[op.name], inputs=tuple(renamed.get(i, i) for i in op.inputs)
                )
            )
        pool.append(_Value(ops[-1].name, result.encoding, values))
    if not ops:
        return None
    program = Program(tuple(ops), ops[-1].name)
    live = live_ops(program)
    if not any("tokens" in op.inputs for op in live):
        return None  # tracr compiles only programs that read the tokens
    if not config.min_ops <= sum(op.kind != "select" for op in live) <= config.max_ops:
        return None  # one op can revive dead ones and overshoot; draws can run out
    return Program(tuple(live), program.output)


def _live_sops(ops: list[Op]) -> int:
    """Value-producing ops the last op depends on (cheap: no Program built)."""
    needed, count = {ops[-1].name}, 0
    for op in reversed(ops):
        if op.name in needed:
            needed.update(op.inputs)
            count += op.kind != "select"
    return count


def _pick(
    rng: np.random.Generator, config: SamplerConfig, candidates: list[_Value], pool: list[_Value]
) -> _Value | None:
    if not candidates:
        return None
    newest = pool[-1]
    if newest in candidates and rng.random() < config.p_chain:
        return newest
    return candidates[int(rng.integers(len(candidates)))]


def _numbers(values: frozenset) -> bool:
    return all(isinstance(v, (int, float)) for v in values)


def _same_type(value: _Value, candidates: list[_Value]) -> list[_Value]:
    """The candidates a function or comparison can pair with `value`:
    numbers with numbers, strings with strings."""
    return [v for v in candidates if _numbers(v.values) == _numbers(value.values)]


def _string_table(rng: np.random.Generator, values: frozenset, boolean: bool) -> Fn:
    """A Map on string values as people write one: membership in a random
    non-empty proper subset (`x in {"a", "c"}`, boolean), a random code in
    small integers (`{"a": 0, "b": 2, ...}`) or a relabelling into the same
    strings (`{"a": "c", ...}`)."""
    ordered = sorted(values)
    if boolean:
        size = int(rng.integers(1, max(len(ordered), 2)))
        members = {ordered[i] for i in rng.choice(len(ordered), size=size, replace=False)}
        return Fn.from_table({x: x in members for x in ordered}, 1)
    if rng.random() < 0.5:
        codes = rng.integers(0, int(rng.integers(2, len(ordered) + 2)), size=len(ordered))
        return Fn.from_table({x: int(c) for x, c in zip(ordered, codes)}, 1)
    images = rng.integers(len(ordered), size=len(ordered))
    return Fn.from_table({x: ordered[i] for x, i in zip(ordered, images)}, 1)


# The binary library functions defined on any two strings.
_STRING_BINARY = ("min2", "max2", "eq2", "neq2", "lt2", "leq2", "gt2", "geq2")


def _library_fn(rng: np.random.Generator, arity: int, boolean_only: bool = False) -> Fn:
    names = [
        n
        for n, e in LIBRARY.items()
        if e.arity == arity and not e.predicate and (e.boolean or not boolean_only)
    ]
    entry = LIBRARY[names[int(rng.integers(len(names)))]]
    low, high = entry.param_range
    params = tuple(int(rng.integers(low, high + 1)) for _ in entry.params)
    return Fn(entry.name, params)


def _map(rng, config, pool, max_seq_len, name):
    categorical = [v for v in pool if v.encoding == "categorical"]
    numerical = [v for v in pool if v.encoding == "numerical"]
    roll = rng.random()
    if numerical and rng.random() < config.p_numerical_input_map:
        arg = _pick(rng, config, numerical, pool)
        encoding = "numerical" if rng.random() < 0.5 else "categorical"
        return [Op("map", name, (arg.name,), encoding, _library_fn(rng, 1, boolean_only=True))]
    arg = _pick(rng, config, categorical, pool)
    if arg is None:
        return []
    boolean = roll < 0.45  # a 0/1 numerical value, the raw material of means
    encoding = "numerical" if boolean else "categorical"
    if not _numbers(arg.values):
        return [Op("map", name, (arg.name,), encoding, _string_table(rng, arg.values, boolean))]
    return [Op("map", name, (arg.name,), encoding, _library_fn(rng, 1, boolean_only=boolean))]


def _sequence_map(rng, config, pool, max_seq_len, name):
    categorical = [v for v in pool if v.encoding == "categorical"]
    first = _pick(rng, config, categorical, pool)
    if first is None:
        return []
    others = [v for v in _same_type(first, categorical) if v is not first]
    if not others:
        return []
    second = others[int(rng.integers(len(others)))]
    args = (first.name, second.name) if rng.random() < 0.5 else (second.name, first.name)
    if _numbers(first.values):
        fn = _library_fn(rng, 2)
    else:
        fn = Fn(_STRING_BINARY[int(rng.integers(len(_STRING_BINARY)))])
    return [Op("sequence_map", name, args, "categorical", fn)]


def _linear_sequence_map(rng, config, pool, max_seq_len, name):
    numerical = [v for v in pool if v.encoding == "numerical"]
    first = _pick(rng, config, numerical, pool)
    others = [v for v in numerical if v is not first]
    if first is None or not others:
        return []
    second = others[int(rng.integers(len(others)))]
    coefficients = tuple(float(c) for c in rng.choice(list(config.coefficients), size=2))
    return [
        Op("linear_sequence_map", name, (first.name, second.name), "numerical", coefficients=coefficients)
    ]


def _select(rng, pool, name, comparisons=COMPARISONS, p_custom=0.0, predicates=None):
    """A Select over two categorical SOps (both numbers or both strings) with a random
    comparison; with probability `p_custom`, over `indices` twice with a random
    library predicate (among `predicates`, by default all of them)."""
    if rng.random() < p_custom:
        predicates = predicates or library_predicates()
        predicate = predicates[int(rng.integers(len(predicates)))]
        return Op("select", f"{name}_select", ("indices", "indices"), fn=predicate)
    categorical = [v for v in pool if v.encoding == "categorical"]
    keys = categorical[int(rng.integers(len(categorical)))]
    same = _same_type(keys, categorical)
    queries = same[int(rng.integers(len(same)))]
    comparison = comparisons[int(rng.integers(len(comparisons)))]
    return Op("select", f"{name}_select", (keys.name, queries.name), comparison=comparison)


def _numerical_aggregate(rng, config, pool, max_seq_len, name):
    binary = [v for v in pool if v.encoding == "numerical" and v.values <= {0, 1}]
    arg = _pick(rng, config, binary, pool)
    if arg is None:
        return []
    select = _select(
        rng, pool, name, ("EQ", "LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE"), config.p_custom_predicate
    )
    return [select, Op("aggregate", name, (select.name, arg.name), "numerical")]


def _categorical_aggregate(rng, config, pool, max_seq_len, name):
    categorical = [v for v in pool if v.encoding == "categorical"]
    arg = _pick(rng, config, categorical, pool)
    positions = [
        v
        for v in categorical
        if v.name != "indices" and _numbers(v.values) and v.values & set(range(max_seq_len))
    ]
    # tracr sizes value projections by the query/key width (max_seq_len here).
    if arg is None or not positions or len(arg.values) > max_seq_len:
        return []
    if rng.random() < config.p_custom_predicate:
        # A shift selects at most one position too: the previous token, the one two back, ...
        shifts = [p for p in library_predicates() if p.name == "shift"]
        select = _select(rng, pool, name, p_custom=1.0, predicates=shifts)
        return [select, Op("aggregate", name, (select.name, arg.name), "categorical")]
    query = positions[int(rng.integers(len(positions)))]
    select = Op("select", f"{name}_select", ("indices", query.name), comparison="EQ")
    return [select, Op("aggregate", name, (select.name, arg.name), "categorical")]


def _selector_width(rng, config, pool, max_seq_len, name):
    select = _select(rng, pool, name, p_custom=config.p_custom_predicate)
    return [select, Op("selector_width", name, (select.name,), "categorical")]


_BUILDERS = {
    "map": _map,
    "sequence_map": _sequence_map,
    "linear_sequence_map": _linear_sequence_map,
    "numerical_aggregate": _numerical_aggregate,
    "categorical_aggregate": _categorical_aggregate,
    "selector_width": _selector_width,
}
