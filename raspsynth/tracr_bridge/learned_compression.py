"""Learned compression: a model in tracr's `CompressedTransformer` form.

In: a `Model`, a residual width `dim`, a seed. Out: `LearnedCompression`,
the model whose residual has `dim` dimensions, written through a trained
matrix W [D, dim] and read through its transpose (`Model.in_basis(W, W.T)`),
and the share of probe inputs on which its decoded outputs equal the
original's.

Reads and writes are not exact inverses there: W W^T is the identity on
the visited states only as far as training made it so, and every read picks
up a little of other directions (interference). That is the form of tracr's
compressed models and of InterpBench's trained ones, and what basis
recovery must read through.

W starts from the lossless projection (`Model.visited_basis`: the leading
`dim` directions of the visited states, rotated at random), perturbed by
Gaussian noise of relative size `noise` (2% already breaks most probes), so
that even at the visited-state rank the result is learned rather than a
projection. Adam then trains it with E = W W^T - I against two terms:

- the residual: at every point of the residual (after the embeddings and
  after each sublayer), ||B^T E||^2 for an orthonormal basis B of the
  states visited there: every visited state written and read back as
  itself. A basis rather than the states themselves, so that a direction
  only rare states take (which can still decide an output) weighs as much
  as a common one; and the error does not compound through the network,
  so training is a smooth problem in W, not a chase through flipped steps.
- the outputs: ||B^T E U||^2 at the last point, U the unembed: logits equal
  to the original's where it defines an output and, where it does not
  (its logits are zero there), pushed to zero.

Weighting each point by the map that reads it next (a discretising MLP's
steep input, attention's scaled queries) was tried: it stalls Adam, the
Hessian spread being that of the slopes.

Every `CHECK_EVERY` steps the compressed model runs on every probe input;
training stops at the first exact agreement, so the interference that
remains is what the model tolerates.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from raspsynth.errors import InputError, checked_seed
from raspsynth.tracr_bridge.model import Model, spanning_vectors
from raspsynth.tracr_bridge.outputs import codes_equal
from raspsynth.tracr_bridge.probes import probe_inputs

STEPS = 400
LEARNING_RATE = 1e-3
NOISE = 0.02
CHECK_EVERY = 10


@dataclasses.dataclass(frozen=True)
class LearnedCompression:
    """A trained compression: the compressed `model` (residual width
    `model.d_model`), the share of probe inputs whose decoded outputs equal
    the original's at the start (`start_agreement`) and at the end
    (`agreement`), the Adam steps taken, and the `interference` left: the
    largest change a round trip through the compressed residual makes to
    a unit visited state, max_j ||B_j^T (W W^T - I)||_2 (0 for a lossless
    projection)."""

    model: Model
    start_agreement: float
    agreement: float
    steps: int
    interference: float

    @property
    def exact(self) -> bool:
        """Whether every probe input decodes as the original does."""
        return self.agreement == 1.0


def _visited_bases(grams: np.ndarray) -> list:
    """Per point of the residual (after the embeddings, then after each
    sublayer; `Model.visited_grams`), an orthonormal basis of the states
    visited there, as rows [r, D] (float64 torch tensors)."""
    import torch

    bases = []
    for gram in grams:
        vectors, rank = spanning_vectors(gram)
        bases.append(torch.from_numpy(np.ascontiguousarray(vectors[:, :rank].T)))
    return bases


def _agreeing(compressed: Model, encoded: tuple, want: np.ndarray) -> np.ndarray:
    """Per probe input (`encoded` once, `Model.encode_padded`), whether
    `compressed` decodes every position as the original did (`want`: its
    codes, undefined positions marked; the two share a spec)."""
    have, _ = compressed.output_codes_of(encoded, mark_undefined=True)
    return codes_equal(want, have, compressed.spec.numerical).all(axis=1)


def learn_compression(
    model: Model,
    dim: int | None = None,
    seed: int = 0,
    steps: int = STEPS,
    noise: float = NOISE,
    learning_rate: float = LEARNING_RATE,
) -> LearnedCompression:
    """Train `model`'s residual down to `dim` dimensions (default: the
    visited-state rank) in the `CompressedTransformer` form; see the module
    docstring. Deterministic for a seed."""
    import torch

    seed = checked_seed(seed)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise InputError(f"steps must be a non-negative integer; got {steps!r}")
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0 <= noise < 1:
        raise InputError(f"noise must be a number in [0, 1); got {noise!r}")
    grams = model.visited_grams()  # one pass over the probes serves both
    start = model.visited_basis(dim, seed, grams)  # [D, dim], orthonormal columns
    rng = np.random.default_rng(seed)
    start = start + noise * rng.normal(size=start.shape) / np.sqrt(model.d_model)

    inputs = probe_inputs(model)
    encoded = model.encode_padded(inputs)
    want, _ = model.output_codes_of(encoded, mark_undefined=True)
    bases = _visited_bases(grams)
    unembed = torch.from_numpy(np.asarray(model.unembed, dtype=np.float64))
    identity = torch.eye(model.d_model, dtype=torch.float64)
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([w], lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1), learning_rate * 1e-3)

    def compressed() -> Model:
        matrix = w.detach().numpy().copy()
        return model.in_basis(matrix, matrix.T)

    agreeing = _agreeing(compressed(), encoded, want)
    start_agreement, taken = float(agreeing.mean()), 0
    while taken < steps and not agreeing.all():
        round_trip = w @ w.T - identity
        residual = sum(((basis @ round_trip) ** 2).sum() for basis in bases)
        loss = residual + ((bases[-1] @ round_trip @ unembed) ** 2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        taken += 1
        if taken % CHECK_EVERY == 0 or taken == steps:
            agreeing = _agreeing(compressed(), encoded, want)
    with torch.no_grad():
        round_trip = w @ w.T - identity
        interference = max(
            (float(torch.linalg.matrix_norm(b @ round_trip, 2)) for b in bases if len(b)), default=0.0
        )
    return LearnedCompression(compressed(), start_agreement, float(agreeing.mean()), taken, interference)
