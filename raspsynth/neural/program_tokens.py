"""Program tokens: the meta-model's output language, and its grammar.

In: a program IR. Out: a token sequence, one group per value-producing op in
program order, then EOS (the program's output is its last op):

    map                  MAP <enc> <ref> <fn>
    sequence_map         SEQUENCE_MAP <enc> <ref> <ref> <fn2>
    linear_sequence_map  LINEAR_SEQUENCE_MAP numerical <ref> <ref> <coef> <coef>
    aggregate            AGGREGATE <enc> <ref keys> <ref queries> <cmp> <ref values>
    selector_width       SELECTOR_WIDTH categorical <ref keys> <ref queries> <cmp>

`<cmp>` is CMP_<comparison>, PRED_<library predicate> (PRED_shift_1 is
`q == k + 1`; m marks a negative parameter) or PRED_TABLE, a predicate the
library does not name (a hole, filled from the head's table).

`<ref>` is REF_i: 0 is tokens, 1 indices, i >= 2 the (i-2)-th op's value.
`<fn>` names a library function with its parameters, or FN_TABLE: a function
the library does not name, a hole that the symbolic layer fills with the
exact table. `<coef>` is COEF_k for small integers k, else COEF_OTHER (a
hole for Z3). A Select is folded into the op that uses it.

`Grammar` says, after any prefix, which tokens may come next, so that a
decoder masked by it can only emit sequences that `from_tokens` turns into a
valid, well-typed program (the sampler's typing rules: sequence maps read
categorical values, linear sequence maps and numerical aggregates numerical
ones, a categorical aggregate a categorical one, a map either).
"""

from __future__ import annotations

import dataclasses
import functools

from raspsynth.program.ir import PREDICATES, SOURCES, Fn, Op, Program, ProgramError, library_predicates
from raspsynth.symbolic.value_semantics import library_functions

MAX_OPS = 16
MAX_TOKENS = 2 + 6 * MAX_OPS  # the longest sequence: BOS, MAX_OPS groups of at most 6, EOS
COEFFICIENTS = (-3, -2, -1, 0, 1, 2, 3)
OP_KINDS = ("map", "sequence_map", "linear_sequence_map", "aggregate", "selector_width")
ENCODINGS = ("categorical", "numerical")


def fn_token(fn: Fn) -> str:
    """FN_<name>_<params>: the token of a library function."""
    return f"FN_{fn.name}" + "".join(f"_{p}" for p in fn.params)


@functools.cache
def vocabulary() -> tuple[str, ...]:
    """Every token, in id order (id 0 is PAD)."""
    tokens = ["PAD", "BOS", "EOS"]
    tokens += [kind.upper() for kind in OP_KINDS]
    tokens += [f"ENC_{e}" for e in ENCODINGS]
    tokens += [f"REF_{i}" for i in range(MAX_OPS + len(SOURCES))]
    tokens += [f"CMP_{c}" for c in PREDICATES]
    tokens += [fn_token(fn) for fn in library_functions(1)] + ["FN_TABLE"]
    tokens += [fn_token(fn) for fn in library_functions(2)] + ["FN2_TABLE"]
    tokens += [f"COEF_{k}" for k in COEFFICIENTS] + ["COEF_OTHER"]  # COEFFICIENT_TOKENS
    tokens += [predicate_token_of(fn) for fn in library_predicates()] + ["PRED_TABLE"]
    return tuple(tokens)


def predicate_token_of(fn: Fn) -> str:
    """PRED_<name>_<params> (m for a minus): the token of a library predicate."""
    return "PRED_" + fn_token(fn).removeprefix("FN_").replace("-", "m")


@functools.cache
def token_ids() -> dict[str, int]:
    return {token: i for i, token in enumerate(vocabulary())}


HOLES = frozenset({"FN_TABLE", "FN2_TABLE", "COEF_OTHER", "PRED_TABLE"})


class TokenError(ProgramError):
    """A token sequence that is not a program of this grammar."""


def to_tokens(program: Program) -> list[str]:
    """The token sequence of `program`; ops beyond MAX_OPS raise TokenError."""
    refs = {name: i for i, name in enumerate(SOURCES)}
    out = ["BOS"]
    value_ops = [op for op in program.ops if op.kind != "select"]
    if len(value_ops) > MAX_OPS:
        raise TokenError(f"{len(value_ops)} ops; the grammar takes at most {MAX_OPS}")
    if not value_ops:
        raise TokenError("a program needs at least one op")
    if value_ops[-1].name != program.output:
        raise TokenError("the output must be the last op (reorder the program first)")
    for op in value_ops:
        out += op_tokens(op, program, refs)
        refs[op.name] = len(refs)
    return out + ["EOS"]


def token_groups(tokens: list[str] | tuple[str, ...]) -> list[list[str]]:
    """A complete token sequence (BOS ... EOS) split into its ops' token groups,
    each starting with the op's kind token."""
    groups: list[list[str]] = []
    for token in tokens[1:-1]:
        if token.lower() in OP_KINDS:
            groups.append([])
        groups[-1].append(token)
    return groups


def op_tokens(op: Op, program: Program, refs: dict[str, int]) -> list[str]:
    """The token group of one value op of `program`; `refs` numbers its operands."""
    out = [op.kind.upper(), f"ENC_{op.encoding}"]
    if op.kind in ("aggregate", "selector_width"):
        select = program.op(op.inputs[0])
        keys, queries = select.inputs
        out += [f"REF_{refs[keys]}", f"REF_{refs[queries]}", predicate_token(select)]
        if op.kind == "aggregate":
            out.append(f"REF_{refs[op.inputs[1]]}")
    else:
        out += [f"REF_{refs[i]}" for i in op.inputs]
        if op.kind == "linear_sequence_map":
            out += [coefficient_token(c) for c in op.coefficients]
        else:
            token = fn_token(op.fn) if op.fn.name != "table" else None
            if token not in token_ids():
                token = "FN_TABLE" if op.kind == "map" else "FN2_TABLE"
            out.append(token)
    return out


def operands(op: Op, program: Program) -> tuple[str, ...]:
    """What a value op reads, as its tokens name it: a Select folded into its
    Aggregate or SelectorWidth gives its keys and queries first."""
    if op.kind in ("aggregate", "selector_width"):
        return program.op(op.inputs[0]).inputs + op.inputs[1:]
    return op.inputs


COEFFICIENT_TOKENS = tuple(f"COEF_{k}" for k in COEFFICIENTS) + ("COEF_OTHER",)


def predicate_token(select: Op) -> str:
    """CMP_<comparison>, PRED_<library predicate>, or the hole PRED_TABLE."""
    if select.fn is None:
        return f"CMP_{select.comparison}"
    token = predicate_token_of(select.fn) if select.fn.name != "table" else "PRED_TABLE"
    return token if token in token_ids() else "PRED_TABLE"


def coefficient_token(c: float) -> str:
    """COEF_k for a coefficient within 1e-3 of a small integer k, else COEF_OTHER."""
    near = round(float(c))
    return f"COEF_{near}" if abs(float(c) - near) < 1e-3 and near in COEFFICIENTS else "COEF_OTHER"


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A program from tokens; `holes` names each op with an unknown part."""

    program: Program
    holes: dict[str, str]  # op name -> "function" | "coefficients" | "predicate"


def from_tokens(tokens: list[str]) -> Decoded:
    """The program a complete token sequence denotes. Holes get placeholders
    (identity functions, coefficients 1, 1) and are listed in `holes`."""
    grammar = Grammar()
    for token in tokens:
        if token not in grammar.allowed():
            raise TokenError(f"token {token!r} not allowed after {grammar.prefix}")
        grammar = grammar.push(token)
    if not grammar.finished:
        raise TokenError("the sequence does not end with EOS")
    return grammar.program()


@dataclasses.dataclass(frozen=True)
class Grammar:
    """The decoding state: tokens so far and the typed values they define."""

    prefix: tuple[str, ...] = ()
    encodings: tuple[str, ...] = ("categorical", "categorical")  # per ref
    finished: bool = False
    ops: int | None = None  # exactly this many ops (None: 1 to MAX_OPS)

    def _group(self) -> list[str]:
        """Tokens of the op being written (after its kind token)."""
        for i in range(len(self.prefix) - 1, -1, -1):
            if self.prefix[i].lower() in OP_KINDS:
                return list(self.prefix[i:])
        return []

    def allowed(self) -> frozenset[str]:
        if not self.prefix:
            return frozenset({"BOS"})
        if self.finished:
            return frozenset()
        group = self._group()
        n_ops = len(self.encodings) - len(SOURCES)
        if not group or self._complete(group):
            room = n_ops < (MAX_OPS if self.ops is None else self.ops)
            end = n_ops > 0 if self.ops is None else n_ops == self.ops
            kinds = {k.upper() for k in OP_KINDS if self._can_start(k)} if room else set()
            return frozenset(kinds | ({"EOS"} if end else set()))
        kind, rest = group[0].lower(), group[1:]
        slots = SLOTS[kind]
        slot = slots[len(rest)]
        encoding = rest[0][4:] if rest else None
        return frozenset(self._slot_tokens(kind, slot, encoding))

    def current_group(self) -> list[str] | None:
        """Tokens of the op being written (its kind first), or None between ops."""
        group = self._group()
        return group if group and not self._complete(group) else None

    def _can_start(self, kind: str) -> bool:
        categorical = self.encodings.count("categorical")
        numerical = self.encodings.count("numerical")
        if kind == "sequence_map":
            return categorical >= 2
        if kind == "linear_sequence_map":
            return numerical >= 2
        return True

    def _complete(self, group: list[str]) -> bool:
        return len(group) - 1 == len(SLOTS[group[0].lower()])

    def _slot_tokens(self, kind: str, slot: str, encoding: str | None) -> list[str]:
        if slot == "enc":
            if kind == "linear_sequence_map":
                return ["ENC_numerical"]
            if kind == "selector_width":
                return ["ENC_categorical"]
            if kind == "aggregate" and "numerical" not in self.encodings:
                return ["ENC_categorical"]
            return [f"ENC_{e}" for e in ENCODINGS]
        if slot == "ref":
            if kind == "map":  # tracr discretises a numerical input (numerical-input Maps)
                return [f"REF_{i}" for i in range(len(self.encodings))]
            wanted = "numerical" if kind == "linear_sequence_map" else "categorical"
            return [f"REF_{i}" for i, e in enumerate(self.encodings) if e == wanted]
        if slot == "value":
            return [f"REF_{i}" for i, e in enumerate(self.encodings) if e == encoding]
        if slot == "cmp":
            return [f"CMP_{c}" for c in PREDICATES] + list(_PREDICATE_TOKENS)
        if slot == "fn":
            # Any function: the sampler gives numerical maps boolean ones, but a
            # reading may name another one equal to it on the values that occur.
            return [fn_token(fn) for fn in library_functions(1)] + ["FN_TABLE"]
        if slot == "fn2":
            return [fn_token(fn) for fn in library_functions(2)] + ["FN2_TABLE"]
        return list(COEFFICIENT_TOKENS)

    def push(self, token: str) -> Grammar:
        prefix = self.prefix + (token,)
        if token == "EOS":
            return dataclasses.replace(self, prefix=prefix, finished=True)
        state = dataclasses.replace(self, prefix=prefix)
        group = state._group()
        if group and state._complete(group):
            return dataclasses.replace(state, encodings=self.encodings + (group[1][4:],))
        return state

    def program(self) -> Decoded:
        ops, holes, names = [], {}, list(SOURCES)
        for index, group in enumerate(token_groups(self.prefix)):
            kind, encoding = group[0].lower(), group[1][4:]
            name = f"{kind}_{index}"
            refs = [names[int(t[4:])] for t in group[2:] if t.startswith("REF_")]
            if kind in ("aggregate", "selector_width"):
                token = group[4]
                if token == "PRED_TABLE":  # placeholder EQ: a hole on the op its select feeds
                    holes[name] = "predicate"
                    select = Op("select", f"select_{index}", (refs[0], refs[1]), comparison="EQ")
                elif token.startswith("PRED_"):
                    select = Op("select", f"select_{index}", (refs[0], refs[1]), fn=_PREDICATE_TOKENS[token])
                else:
                    select = Op("select", f"select_{index}", (refs[0], refs[1]), comparison=token[4:])
                ops.append(select)
                inputs = (select.name,) + tuple(refs[2:])
                ops.append(Op(kind, name, inputs, encoding))
            elif kind == "linear_sequence_map":
                coefs = [t for t in group if t.startswith("COEF_")]
                if "COEF_OTHER" in coefs:
                    holes[name] = "coefficients"
                values = tuple(1.0 if t == "COEF_OTHER" else float(t[5:]) for t in coefs)
                ops.append(Op(kind, name, tuple(refs), encoding, coefficients=values))
            else:
                fn_token = group[-1]
                if fn_token in HOLES:
                    holes[name] = "function"
                    fn = Fn("identity") if kind == "map" else Fn("add2")
                else:
                    fn = _FN_BY_TOKEN[fn_token]
                ops.append(Op(kind, name, tuple(refs), encoding, fn=fn))
            names.append(name)
        return Decoded(Program(tuple(ops), names[-1]), holes)


SLOTS = {
    "map": ("enc", "ref", "fn"),
    "sequence_map": ("enc", "ref", "ref", "fn2"),
    "linear_sequence_map": ("enc", "ref", "ref", "coef", "coef"),
    "aggregate": ("enc", "ref", "ref", "cmp", "value"),
    "selector_width": ("enc", "ref", "ref", "cmp"),
}
_FN_BY_TOKEN = {fn_token(fn): fn for fn in library_functions(1) + library_functions(2)}
_PREDICATE_TOKENS = {predicate_token_of(fn): fn for fn in library_predicates()} | {"PRED_TABLE": None}
