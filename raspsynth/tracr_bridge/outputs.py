"""Decoded outputs and the one rule for comparing them.

In: output logits of a `Model` (or decoded values). Out: decoded values
(None where a position holds no output at all) and equality of values.

The rule, used by verification, sampling checks, observation of
intermediate values and the symbolic layer's fits:
- A categorical position is *undefined* only where every output logit is at
  float-noise level: at most `NOISE_FLOOR` times the model's logit scale
  (the largest |logit| it produces, 1 for tracr's one-hot outputs). An
  Aggregate that selected nothing leaves such a position: logits of float
  rounding (~1e-17 in float64, ~1e-8 in float32, ~1e-6 after a rotated
  residual) or of tracr's own leakage there (up to 3e-4 measured: the
  discretising MLPs' inexact one-hots, in make_sort_unique with repeated
  keys), and there the argmax depends on summation order and the CPU. A blend
  (an Aggregate over differing values) has a top logit of at least
  1/max_seq_len >= 2e-3 (max_seq_len <= 512, as `compile_program` allows),
  typically 1/10: it is an output like any other, decoded by argmax.
- Undefined meets only undefined; everywhere else decoded values must be
  equal: categorical ones exactly (True is not 1: the type is part of the
  value), numerical ones within `NUMERICAL_ATOL` plus `NUMERICAL_RTOL` of
  their size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Relative to the model's logit scale: between tracr's leakage (3e-4) and the
# smallest blend at max_seq_len 512 (2e-3); see the module docstring.
NOISE_FLOOR = 1e-3
# Two compilations of equivalent programs can differ in how their numerical
# MLPs approximate a function; this is the tolerance for calling them equal.
NUMERICAL_ATOL = 1e-3
# float32 weights in a rotated or mixed residual round each state near 1e-6
# of its size, and a numerical MLP's discretising slope (large_number 100,
# times the step of its function) carries that to its output: a model whose
# numbers reach 50 is off by up to 2e-2 (measured: 55.98 for 56), far below
# the steps between the values tracr computes.
NUMERICAL_RTOL = 1e-3


def numbers_close(want: np.ndarray | float, have: np.ndarray | float) -> np.ndarray | np.bool_:
    """Whether numerical outputs agree (scalars or arrays, elementwise)."""
    return np.abs(want - have) <= NUMERICAL_ATOL + NUMERICAL_RTOL * np.maximum(np.abs(want), np.abs(have))


def undefined_positions(logits: np.ndarray, logit_scale: float) -> np.ndarray:
    """Boolean mask over positions of `logits` [..., O]: True where every
    logit is at float-noise level (see the module docstring)."""
    return np.abs(logits).max(axis=-1) <= NOISE_FLOOR * logit_scale


# Output codes: a categorical position as its column in the output values,
# or one of these; a numerical one as its value (NaN past the sequence's end).
UNDEFINED = -1
PAST_END = -2
FOREIGN = -3  # a value the other side's output values do not hold


def output_codes(
    logits: np.ndarray, lengths: np.ndarray, numerical: bool, logit_scale: float | None = None
) -> np.ndarray:
    """Decoded outputs of a batch, as an array: logits [B, T, O] of sequences
    of `lengths` -> [B, T]. Categorical: the argmax's column (ties to the
    first, as in tracr), `UNDEFINED` at undefined positions when
    `logit_scale` is given, `PAST_END` after a sequence's end. Numerical: the
    value as float64, NaN after the end. The array form of `decode_logits`."""
    past_end = np.arange(logits.shape[1])[None, :] >= np.asarray(lengths)[:, None]
    if numerical:
        codes = logits[..., 0].astype(np.float64)
        codes[past_end] = np.nan
        return codes
    codes = logits.argmax(-1).astype(np.int32) if logits.shape[-1] else np.zeros(logits.shape[:2], np.int32)
    if logit_scale is not None:
        codes[undefined_positions(logits, logit_scale)] = UNDEFINED
    codes[past_end] = PAST_END
    return codes


def codes_equal(want: np.ndarray, have: np.ndarray, numerical: bool) -> np.ndarray:
    """Per position, whether two code arrays agree (the rule of `values_equal`;
    categorical codes must index the same output values: see `translate_codes`)."""
    if numerical:
        return numbers_close(want, have) | (np.isnan(want) & np.isnan(have))
    return want == have


def value_key(value: Any) -> tuple:
    """A token's or output value's identity: equal values collide (1 and
    1.0), but True stays apart from 1 (the type of a bool is its value)."""
    return (isinstance(value, bool), value)


def translate_codes(codes: np.ndarray, values: tuple, into: tuple) -> np.ndarray:
    """Categorical codes over output `values` re-expressed over `into`
    (`FOREIGN` for a value `into` lacks; True stays apart from 1)."""
    column = {value_key(v): i for i, v in enumerate(into)}
    lookup = np.array([column.get(value_key(v), FOREIGN) for v in values] + [PAST_END, UNDEFINED])
    return lookup[codes]  # PAST_END (-2) and UNDEFINED (-1) index the last two entries


def decode_codes(codes: np.ndarray, lengths: np.ndarray, output_values: tuple | None) -> list[list]:
    """Code arrays back to per-sequence lists of values (None where undefined)."""
    if output_values is None:
        return [row[:n].tolist() for row, n in zip(codes, lengths)]
    lookup = np.empty(len(output_values) + 2, dtype=object)
    for i, value in enumerate(output_values):  # one by one: a tuple stays one value
        lookup[i] = value
    values = lookup[codes]  # PAST_END and UNDEFINED index the two trailing Nones
    return [row[:n].tolist() for row, n in zip(values, lengths)]


def decode_logits(logits: np.ndarray, output_values: tuple | None, logit_scale: float | None = None) -> list:
    """Decoded outputs of one sequence's logits [len, O]: floats for a
    numerical output (`output_values` None), else the argmax's value (ties to
    the first column, as in tracr), None at undefined positions when
    `logit_scale` is given. `output_codes` and `decode_codes` for one row."""
    length = np.array([len(logits)])
    codes = output_codes(logits[None], length, output_values is None, logit_scale)
    return decode_codes(codes, length, output_values)[0]


def values_equal(want: Any, have: Any, numerical: bool = False, bool_as_int: bool = False) -> bool:
    """Whether two decoded values agree: None (no value) meets only None;
    numerical values as `numbers_close`; others exactly, keeping bools
    apart from numbers unless `bool_as_int` (a residual block, which cannot
    tell True from 1)."""
    if want is None or have is None:
        return want is None and have is None
    if numerical:
        try:
            return bool(numbers_close(float(want), float(have)))
        except (TypeError, ValueError):
            return False
    if not bool_as_int and isinstance(want, bool | np.bool_) != isinstance(have, bool | np.bool_):
        return False
    return bool(want == have)


def rows_equal(want: list, have: list, numerical: bool) -> bool:
    """Whether two decoded output sequences agree at every position."""
    return len(want) == len(have) and all(values_equal(w, h, numerical) for w, h in zip(want, have))
