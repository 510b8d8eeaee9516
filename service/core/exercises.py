"""Seeded, reproducible exercises: every student their own problem from one seed.

The same seed and options give the same numbers on every call and every
replica (NumPy's PCG64 generator, pinned by the project's NumPy version).
``decimals`` rounds every generated number so a problem can be worked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .budget import NO_DEADLINE, Deadline
from .network import Layer, Problem, dense_layer


@dataclass(frozen=True)
class ExerciseSpec:
    seed: int
    layer_sizes: tuple[int, ...]  # (n_in, n_1, ..., n_out)
    activations: tuple[str, ...]  # one per layer
    loss: str
    reduction: str = "mean"
    batch_size: int = 4
    decimals: int | None = None
    dz_scale: str = "reduced"


def generate(spec: ExerciseSpec, deadline: Deadline = NO_DEADLINE) -> Problem:
    """A canonical problem; the schemas lay it out in the requested convention.

    Its cost is priced from the spec alone (service.core.request_costs), before this runs.
    """
    rng = np.random.default_rng(spec.seed)
    sizes = spec.layer_sizes

    def rounded(array: np.ndarray) -> np.ndarray:
        return array if spec.decimals is None else np.round(array, spec.decimals)

    def layer(n_in: int, n_out: int, activation: str) -> Layer:
        deadline.check()
        return dense_layer(
            weights=rounded(rng.normal(scale=1 / np.sqrt(n_in), size=(n_in, n_out))),
            biases=rounded(rng.normal(scale=0.5, size=n_out)),
            activation=activation,
        )

    layers = tuple(map(layer, sizes[:-1], sizes[1:], spec.activations))
    inputs = rounded(rng.normal(size=(spec.batch_size, sizes[0])))
    return Problem(
        inputs=inputs,
        targets=_targets(rng, spec.loss, spec.batch_size, sizes[-1], rounded),
        layers=layers,
        loss=spec.loss,
        reduction=spec.reduction,
        dz_scale=spec.dz_scale,
    )


def _targets(rng, loss: str, batch: int, n_out: int, rounded) -> np.ndarray:
    if loss == "bce":
        return rng.integers(0, 2, size=(batch, n_out)).astype(np.float64)
    if loss in ("cross_entropy", "svm"):
        return np.eye(n_out)[rng.integers(0, n_out, size=batch)]  # one-hot rows
    if loss == "hinge":
        return 2.0 * rng.integers(0, 2, size=(batch, n_out)) - 1.0  # -1 or +1
    return rounded(rng.normal(size=(batch, n_out)))
