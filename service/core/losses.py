"""Loss functions, each value beside its gradient.

Canonical shapes: z, a and y are (batch, n_out).  Every function returns the
*unreduced* sum; ``reduce_scale`` gives the factor that the reduction applies
to both the loss and dL/dz, exactly as PyTorch defines it (MSELoss,
BCEWithLogitsLoss, CrossEntropyLoss with probability targets).

``grad_z`` gives dL/dz directly.  Losses that are paired with one output
activation (bce with sigmoid, cross_entropy with softmax) use the fused form
a - y, which stays exact where dL/da * da/dz would divide zero by zero.
``grad_a`` is dL/da, shown by the single-neuron calculator.

Adding a loss is adding one entry to ``LOSSES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .activations import Activation, sigmoid

Array = np.ndarray


@dataclass(frozen=True)
class Loss:
    name: str
    #: total(z, a, y) -> sum of the per-element (or per-sample) losses
    total: Callable[[Array, Array, Array], float]
    #: grad_a(z, a, y) -> dL/da of the unreduced sum
    grad_a: Callable[[Array, Array, Array], Array]
    #: the output activation this loss requires, or None for any
    requires_activation: str | None = None
    #: "mean" divides by every element (True) or by the batch only (False)
    mean_over_elements: bool = True

    def grad_z(self, z: Array, a: Array, y: Array, activation: Activation) -> Array:
        """dL/dz of the unreduced sum; fused (a - y) when the pairing allows."""
        if self.requires_activation is not None:
            return a - y
        return activation.backward(z, a, self.grad_a(z, a, y))

    def reduce_scale(self, reduction: str, batch: int, n_out: int) -> float:
        if reduction == "sum":
            return 1.0
        return 1.0 / (batch * n_out if self.mean_over_elements else batch)


def _bce_total(z: Array, a: Array, y: Array) -> float:
    # -(y log a + (1-y) log(1-a)) from the logits: max(z,0) - z*y + log(1+e^-|z|)
    return float(np.sum(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def _bce_grad_a(z: Array, a: Array, y: Array) -> Array:
    # (a - y) / (a (1 - a)), with a (1 - a) = sigmoid'(z) computed without cancellation
    e = np.exp(-np.abs(z))
    return (sigmoid(z) - y) * (1.0 + e) ** 2 / e


def _log_softmax(z: Array) -> Array:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss(
            "mse",
            total=lambda z, a, y: float(np.sum((a - y) ** 2)),
            grad_a=lambda z, a, y: 2.0 * (a - y),
        ),
        Loss(
            "half_mse",
            total=lambda z, a, y: float(0.5 * np.sum((a - y) ** 2)),
            grad_a=lambda z, a, y: a - y,
        ),
        Loss(
            "bce",
            total=_bce_total,
            grad_a=_bce_grad_a,
            requires_activation="sigmoid",
        ),
        Loss(
            "cross_entropy",
            total=lambda z, a, y: float(-np.sum(y * _log_softmax(z))),
            grad_a=lambda z, a, y: -y / a,
            requires_activation="softmax",
            mean_over_elements=False,
        ),
    )
}

REDUCTIONS = ("mean", "sum")
