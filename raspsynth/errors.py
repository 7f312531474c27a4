"""Exceptions raised across raspsynth.

Every error a user can provoke with bad input is one of these, named for what
went wrong, so callers never have to catch numpy's or tracr's internals;
and the small argument checks that raise them.
"""

import time


class RaspsynthError(Exception):
    """Base class of every error raspsynth raises on purpose."""


class ModelFormatError(RaspsynthError, ValueError):
    """A model file or weight set does not follow the raspsynth-model/1 format."""


class ModelFileNotFound(ModelFormatError, FileNotFoundError):
    """There is no model file at the path given."""


class CompileError(RaspsynthError):
    """tracr refused to compile a program; the message carries tracr's reason."""


class InputError(RaspsynthError, ValueError):
    """An argument the API cannot take: an input sequence with an unknown
    token or over max_seq_len, a budget that is not a positive number, a
    seed that is not a non-negative integer, and so on. The message says
    what was expected."""


class NotTracrStructured(RaspsynthError):
    """The weights do not have the layout tracr compiles programs to (for example
    random matrices, or a residual stream rotated rather than permuted), so no
    program structure can be read off them."""


class CompressionFailed(RaspsynthError):
    """A learned compression (`Model.compressed("learned")`) did not reach
    equal decoded outputs on every probe input; the message says how far it
    got."""


class BudgetSpent(RaspsynthError):
    """The time budget ran out inside a stage. Stages raise it from their
    loops; `synthesize` catches it and returns its best result so far, so it
    never reaches a user."""


def check_deadline(deadline: float | None) -> None:
    """Raise BudgetSpent if `deadline` (a time.monotonic() value) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetSpent("the time budget ran out")


class MetaModelUnavailable(RaspsynthError):
    """A mode that needs the neural meta-model was asked for, but no trained
    checkpoint is available."""


MAX_BUDGET_S = 1e9  # about 32 years: any larger budget is a mistake, not a plan


def checked_seed(seed: object, name: str = "seed") -> int:
    """`seed` if it is a non-negative integer (numpy's generators take no
    other); InputError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"{name} must be a non-negative integer; got {seed!r}")
    return seed


def checked_budget(budget_s: object, name: str = "budget_s") -> float:
    """`budget_s` as a float if it is a positive, finite number of seconds
    (at most `MAX_BUDGET_S`); InputError otherwise."""
    if isinstance(budget_s, bool) or not isinstance(budget_s, int | float):
        raise InputError(f"{name} must be a positive number of seconds; got {budget_s!r}")
    if not 0 < budget_s <= MAX_BUDGET_S:  # compared before float(): 10**400 has no float
        raise InputError(
            f"{name} must be a positive number of seconds, at most {MAX_BUDGET_S:g}; got {budget_s!r}"
        )
    return float(budget_s)
