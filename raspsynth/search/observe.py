"""What the model holds for each SOp, and where a candidate first departs from it.

In: a `Model`, its `Decompiled` reading (structure and value labels) and
input sequences. Out: `observed_values`, each decompiled op's value at every
position, read from the model's final residual stream (tracr writes each
dimension once, so the final residual holds every SOp); and
`first_disagreement`, the first op of a candidate whose traced values differ
from the model's, found by comparing intermediate values instead of outputs
only. Repair starts its edits there.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from raspsynth.program.evaluate import trace
from raspsynth.program.ir import Program
from raspsynth.symbolic.decompile import Decompiled
from raspsynth.tracr_bridge.model import Model, Token
from raspsynth.tracr_bridge.outputs import decode_logits, values_equal

Observed = dict[str, list[list]]  # op name -> per input, per position value (None: no value)

# A categorical block read as RASP reads it: a one-hot value (1) or no value.
# RASP gives a blend of values (an Aggregate over differing ones) no value
# either, so a block whose largest entry is below this holds none. This is the
# reading of RASP evaluation, for screening candidates by their traces; what
# the user sees (and `verify` checks) is the argmax rule of
# `raspsynth.tracr_bridge.outputs`.
HOT_VALUE = 0.75


def rasp_outputs(model: Model, inputs: Sequence[Sequence[Token]]) -> list[list]:
    """The model's outputs as RASP evaluation states them: categorical
    positions holding a blend or nothing (top logit below `HOT_VALUE`) are
    None; what `evaluate` of a correct candidate gives."""
    values, numerical = model.spec.output_values, model.spec.numerical
    rows = []
    for logits in model.logits(inputs):
        decoded = decode_logits(logits, values)
        if not numerical:
            decoded = [v if hot else None for v, hot in zip(decoded, (logits.max(-1) >= HOT_VALUE).tolist())]
        rows.append(decoded)
    return rows


def final_residual(model: Model, inputs: Sequence[Sequence[Token]]) -> list[np.ndarray]:
    """The final residual stream [len, D] of each input, BOS dropped."""
    return [residual[1:] for residual in model.residuals(inputs)]


def observed_values(model: Model, decompiled: Decompiled, inputs: Sequence[Sequence[Token]]) -> Observed:
    """op name -> the value the model holds for it at each position of each input.

    Categorical SOps read as the label of their hot dimension, or None where
    no dimension holds a value; numerical SOps read as their dimension's value.
    Selects have no residual value and are left out.
    """
    structure, labels = decompiled.structure, decompiled.values
    # The structure names dimensions of the model it was read from (a recovered basis, perhaps).
    residuals = final_residual(decompiled.model or model, inputs)
    observed: Observed = {}
    for op_name, component in decompiled.components.items():
        if decompiled.program.op(op_name).kind == "select":
            continue
        block = structure.block(component)
        dims = list(block.dims)
        rows = []
        for residual in residuals:
            part = residual[:, dims].astype(np.float64)
            if block.encoding == "numerical":
                rows.append([_plain(v) for v in part[:, 0]])
            else:
                hot = part.argmax(axis=1)
                defined = part.max(axis=1) >= HOT_VALUE
                rows.append([labels.values[dims[h]] if ok else None for h, ok in zip(hot, defined)])
        observed[op_name] = rows
    return observed


def agrees(model_value: Hashable, candidate_value: Hashable, numerical: bool) -> bool:
    """Does the candidate's RASP value fit what the model holds? None (no
    value) only meets None, except that a numerical SOp the candidate leaves
    undefined may hold anything: tracr's numerical MLPs and means turn "no
    value" into a number. Numbers compare by `numbers_close`, booleans
    as 0/1 (the residual cannot tell them apart)."""
    if candidate_value is None and numerical:
        return True
    both_numbers = _number(model_value) and _number(candidate_value)
    return values_equal(model_value, candidate_value, numerical or both_numbers, bool_as_int=True)


def first_disagreement(
    program: Program, observed: Observed, inputs: Sequence[Sequence[Token]]
) -> tuple[str, float] | None:
    """(op name, fraction of inputs where it disagrees) for the first op in
    program order whose values differ from the model's, or None when every
    observed op agrees."""
    return first_disagreement_in(program, observed, [trace(program, xs) for xs in inputs])


def first_disagreement_in(
    program: Program, observed: Observed, traces: list[dict]
) -> tuple[str, float] | None:
    """`first_disagreement` for the program's traces on the observed inputs,
    when the caller has them already."""
    for op in program.ops:
        rows = observed.get(op.name)
        if rows is None:
            continue
        numerical = op.encoding == "numerical"
        wrong = sum(
            not all(agrees(w, h, numerical) for w, h in zip(want, values[op.name]))
            for want, values in zip(rows, traces)
        )
        if wrong:
            return op.name, wrong / len(traces)
    return None


def _number(value) -> bool:
    return isinstance(value, (bool, int, float, np.integer, np.floating))


def _plain(value: float) -> int | float:
    rounded = round(float(value), 6)
    return int(rounded) if rounded.is_integer() else rounded
