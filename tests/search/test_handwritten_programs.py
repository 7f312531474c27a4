"""Hand-written programs, as people write them, recovered from their weights.

Each program below is written the way "Thinking Like Transformers" and
tracr's `lib` write RASP: shifts and previous-token heads with lambda
predicates, windowed counts, string vocabularies, numerical Maps and
means. Each is compiled by tracr, its residual permuted, and given to
`synthesize`; the recovered `res.source` is then executed and compiled by
tracr again, and must give the model's outputs (decoded by the one output
rule) on every probe input checked. The expectation is the original
program's own compiled model, not anything raspsynth computed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from tracr.rasp import rasp

from raspsynth import synthesize
from raspsynth.tracr_bridge import compile_program, probe_inputs, rows_equal

BUDGET_S = 20.0
CHECKED_INPUTS = 400


def shift_by(offset: int, sop: rasp.SOp) -> rasp.SOp:
    """tracr lib's shift_by: the value `offset` positions back (None before)."""
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + offset)
    return rasp.categorical(rasp.Aggregate(select, sop, default=None))


def length() -> rasp.SOp:
    return rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))


def is_token(token) -> rasp.SOp:
    return rasp.numerical(rasp.Map(lambda x: x == token, rasp.tokens))


def previous_token() -> rasp.SOp:
    return shift_by(1, rasp.tokens)


def two_back() -> rasp.SOp:
    return shift_by(2, rasp.tokens)


def next_token() -> rasp.SOp:
    return shift_by(-1, rasp.tokens)


def repeated_token() -> rasp.SOp:
    return rasp.categorical(rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, shift_by(1, rasp.tokens)))


def window_count() -> rasp.SOp:
    # tracr needs every program to read the tokens: the window's size plus the token.
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: abs(k - q) <= 1)
    width = rasp.categorical(rasp.SelectorWidth(select))
    return rasp.categorical(rasp.SequenceMap(lambda n, x: n + x, width, rasp.tokens))


def earlier_than_previous() -> rasp.SOp:
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k < q - 1)
    width = rasp.categorical(rasp.SelectorWidth(select))
    return rasp.categorical(rasp.SequenceMap(lambda n, x: n if x > 1 else 0, width, rasp.tokens))


def same_parity_count() -> rasp.SOp:
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k % 2 == q % 2)
    width = rasp.categorical(rasp.SelectorWidth(select))
    return rasp.categorical(rasp.SequenceMap(lambda n, x: n * x, width, rasp.tokens))


def first_token() -> rasp.SOp:
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == 0)
    return rasp.categorical(rasp.Aggregate(select, rasp.tokens, default=None))


def token_successor_count() -> rasp.SOp:
    # How many tokens equal this one plus one: a custom predicate over token values.
    select = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k == q + 1)
    return rasp.categorical(rasp.SelectorWidth(select))


def window_mean() -> rasp.SOp:
    select = rasp.Select(rasp.indices, rasp.indices, lambda k, q: abs(k - q) <= 1)
    return rasp.numerical(rasp.Aggregate(select, is_token(1), default=0))


def fraction_of_ones_so_far() -> rasp.SOp:
    select = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(select, is_token(1), default=0))


def histogram() -> rasp.SOp:
    return rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)))


def reverse() -> rasp.SOp:
    opposite = rasp.categorical(rasp.SequenceMap(lambda n, i: n - i - 1, length(), rasp.indices))
    select = rasp.Select(rasp.indices, opposite, rasp.Comparison.EQ)
    return rasp.categorical(rasp.Aggregate(select, rasp.tokens, default=None))


def count_smaller() -> rasp.SOp:
    return rasp.categorical(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)))


def sort_unique() -> rasp.SOp:
    smaller = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT)
    target = rasp.SelectorWidth(smaller)
    select = rasp.Select(target, rasp.indices, rasp.Comparison.EQ)
    return rasp.categorical(rasp.Aggregate(select, rasp.tokens, default=None))


def sort_with_ties() -> rasp.SOp:
    # tracr lib's make_sort: keys made unique by a fraction of the position.
    keys = rasp.categorical(rasp.SequenceMap(lambda x, i: x + 0.1 * i, rasp.tokens, rasp.indices))
    smaller = rasp.Select(keys, keys, rasp.Comparison.LT)
    target = rasp.SelectorWidth(smaller)
    select = rasp.Select(target, rasp.indices, rasp.Comparison.EQ)
    return rasp.categorical(rasp.Aggregate(select, rasp.tokens, default=None))


def upper_case() -> rasp.SOp:
    return rasp.categorical(rasp.Map(lambda x: x.upper(), rasp.tokens))


def bigram() -> rasp.SOp:
    return rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, shift_by(1, rasp.tokens), rasp.tokens))


def drop_repeats() -> rasp.SOp:
    return rasp.categorical(
        rasp.SequenceMap(lambda x, prev: "_" if x == prev else x, rasp.tokens, shift_by(1, rasp.tokens))
    )


def vowel_flags() -> rasp.SOp:
    return rasp.categorical(rasp.Map(lambda x: x in "aeiou", rasp.tokens))


def pattern_abc() -> rasp.SOp:
    is_a = rasp.categorical(rasp.Map(lambda x: x == "a", rasp.tokens))
    is_b = rasp.categorical(rasp.Map(lambda x: x == "b", rasp.tokens))
    is_c = rasp.categorical(rasp.Map(lambda x: x == "c", rasp.tokens))
    ab = rasp.categorical(rasp.SequenceMap(lambda x, y: x and y, shift_by(2, is_a), shift_by(1, is_b)))
    return rasp.categorical(rasp.SequenceMap(lambda x, y: x and y, ab, is_c))


def oscillation() -> rasp.SOp:
    up = rasp.categorical(rasp.SequenceMap(lambda prev, x: prev < x, shift_by(1, rasp.tokens), rasp.tokens))
    down = rasp.categorical(rasp.SequenceMap(lambda x, nxt: x > nxt, rasp.tokens, shift_by(-1, rasp.tokens)))
    return rasp.categorical(rasp.SequenceMap(lambda a, b: a and b, up, down))


def parity_matches_position() -> rasp.SOp:
    return rasp.categorical(rasp.SequenceMap(lambda i, x: i % 2 == x % 2, rasp.indices, rasp.tokens))


def token_plus_position() -> rasp.SOp:
    return rasp.categorical(rasp.SequenceMap(lambda x, i: x + i, rasp.tokens, rasp.indices))


def clipped_double() -> rasp.SOp:
    doubled = rasp.categorical(rasp.Map(lambda x: 2 * x, rasp.tokens))
    return rasp.categorical(rasp.Map(lambda x: min(x, 5), doubled))


def mean_above_half() -> rasp.SOp:
    # A numerical Map of a mean: tracr's discretising MLP over every mean it can take.
    return rasp.numerical(rasp.Map(lambda x: 1 if x > 0.5 else 0, fraction_of_ones_so_far()))


def balance() -> rasp.SOp:
    opens = rasp.numerical(rasp.Map(lambda x: x == "(", rasp.tokens))
    closes = rasp.numerical(rasp.Map(lambda x: x == ")", rasp.tokens))
    so_far = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    open_share = rasp.numerical(rasp.Aggregate(so_far, opens, default=0))
    close_share = rasp.numerical(rasp.Aggregate(so_far, closes, default=0))
    return rasp.numerical(rasp.LinearSequenceMap(open_share, close_share, 1, -1))


def previous_is_larger_count() -> rasp.SOp:
    previous = shift_by(1, rasp.tokens)
    larger = rasp.categorical(rasp.SequenceMap(lambda prev, x: prev > x, previous, rasp.tokens))
    flags = rasp.numerical(rasp.Map(lambda b: 1 if b else 0, larger))
    so_far = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(so_far, flags, default=0))


def last_two_sum() -> rasp.SOp:
    return rasp.categorical(rasp.SequenceMap(lambda x, y: x + y, rasp.tokens, shift_by(1, rasp.tokens)))


@dataclasses.dataclass(frozen=True)
class Case:
    build: Callable[[], rasp.SOp]
    vocab: frozenset
    max_seq_len: int


NUMBERS = frozenset(range(4))
LETTERS = frozenset("abc")
CASES = {
    "previous token": Case(previous_token, NUMBERS, 6),
    "two back": Case(two_back, LETTERS, 6),
    "next token": Case(next_token, NUMBERS, 5),
    "repeated token": Case(repeated_token, LETTERS, 6),
    "window count": Case(window_count, NUMBERS, 6),
    "earlier than the previous": Case(earlier_than_previous, NUMBERS, 6),
    "same parity count": Case(same_parity_count, NUMBERS, 6),
    "first token": Case(first_token, LETTERS, 5),
    "successor count": Case(token_successor_count, NUMBERS, 5),
    "window mean": Case(window_mean, NUMBERS, 5),
    "fraction of ones so far": Case(fraction_of_ones_so_far, NUMBERS, 5),
    "histogram": Case(histogram, LETTERS, 5),
    "reverse": Case(reverse, NUMBERS, 5),
    "count smaller": Case(count_smaller, NUMBERS, 5),
    "sort unique": Case(sort_unique, NUMBERS, 5),
    "sort with ties": Case(sort_with_ties, frozenset(range(1, 6)), 5),
    "upper case": Case(upper_case, LETTERS, 5),
    "bigram": Case(bigram, LETTERS, 5),
    "drop repeats": Case(drop_repeats, LETTERS, 6),
    "vowel flags": Case(vowel_flags, frozenset("abeg"), 5),
    "pattern abc": Case(pattern_abc, LETTERS, 6),
    "oscillation": Case(oscillation, NUMBERS, 6),
    "parity matches position": Case(parity_matches_position, NUMBERS, 6),
    "token plus position": Case(token_plus_position, NUMBERS, 5),
    "clipped double": Case(clipped_double, NUMBERS, 5),
    "mean above half": Case(mean_above_half, NUMBERS, 4),
    "balance": Case(balance, frozenset("()a"), 5),
    "previous is larger, share so far": Case(previous_is_larger_count, NUMBERS, 5),
    "last two sum": Case(last_two_sum, NUMBERS, 6),
    "length": Case(lambda: rasp.categorical(length()), LETTERS, 6),
}


def _checked_inputs(model) -> list:
    inputs = probe_inputs(model)
    if len(inputs) <= CHECKED_INPUTS:
        return inputs
    picks = np.random.default_rng(0).choice(len(inputs), CHECKED_INPUTS, replace=False)
    return [inputs[i] for i in sorted(picks)]


@pytest.mark.parametrize("name", list(CASES))
def test_a_handwritten_program_is_recovered_and_its_source_recompiles(name):
    case = CASES[name]
    model = compile_program(case.build(), case.vocab, case.max_seq_len).permuted(seed=3)
    result = synthesize(model, budget_s=BUDGET_S)
    assert result.verified, f"{name}: {result.report.get('verification')} / {result.report.get('reason')}"

    scope: dict = {}
    exec(result.source, scope)  # the text a user would copy
    recompiled = compile_program(scope["program"], case.vocab, case.max_seq_len)
    inputs = _checked_inputs(model)
    want = model.run(inputs, mark_undefined=True)
    got = recompiled.run(inputs, mark_undefined=True)
    numerical = model.spec.numerical
    wrong = [xs for xs, w, g in zip(inputs, want, got) if not rows_equal(w, g, numerical)]
    assert not wrong, f"{name}: the recompiled source differs on {len(wrong)} inputs, e.g. {wrong[0]}"


def test_there_are_at_least_thirty_handwritten_programs():
    assert len(CASES) >= 30
