"""Loss functions, each value beside its gradient.

Canonical shapes: z, a and y are (batch, n_out).  Every function returns the
*unreduced* sum; ``reduce_scale`` gives the factor that the reduction applies
to both the loss and dL/dz, exactly as PyTorch defines it (MSELoss,
BCEWithLogitsLoss, CrossEntropyLoss with probability targets).

``grad_z`` gives dL/dz directly.  Losses that are paired with one output
activation (bce with sigmoid, cross_entropy with softmax) use the fused form
a - y, which stays exact where dL/da * da/dz would divide zero by zero.
``grad_a`` is dL/da, shown by the single-neuron calculator.

Targets come in two forms.  Dense targets are (batch, n_out) float64, like the
output.  Class labels (``Loss.takes_labels``: cross_entropy, svm) are int64
(batch,), one class index per sample; each function reads them where it would
have read that sample's one-hot row (``picked``, ``minus_targets``), so no
(batch, classes) one-hot is ever built.

Adding a loss is adding one entry to ``LOSSES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .activations import Activation, sigmoid

Array = np.ndarray


def is_labels(y: Array) -> bool:
    """Class labels (batch,) rather than dense targets (batch, n_out)."""
    return y.ndim == 1


def picked(a: Array, y: Array) -> Array:
    """(batch, 1): each sample's value at its target class (labels or one-hot rows)."""
    if is_labels(y):
        return a[np.arange(y.shape[0]), y][:, None]
    return np.sum(a * y, axis=1, keepdims=True)


def minus_targets(a: Array, y: Array) -> Array:
    """a - y, where class labels stand for their one-hot rows (a new array)."""
    if not is_labels(y):
        return a - y
    out = a.copy()
    out[np.arange(y.shape[0]), y] -= 1.0
    return out


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
    #: targets may be class labels (batch,) as well as dense (batch, n_out)
    takes_labels: bool = False

    def grad_z(self, z: Array, a: Array, y: Array, activation: Activation) -> Array:
        """dL/dz of the unreduced sum; fused (a - y) when the pairing allows."""
        if self.requires_activation is not None:
            return minus_targets(a, y)
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


def _cross_entropy_total(z: Array, a: Array, y: Array) -> float:
    # -sum(y * log_softmax(z)); with labels, the sum of -log_softmax(z)[i, y_i]
    if is_labels(y):
        return float(-np.sum(picked(_log_softmax(z), y)))
    return float(-np.sum(y * _log_softmax(z)))


def _cross_entropy_grad_a(z: Array, a: Array, y: Array) -> Array:
    if not is_labels(y):
        return -y / a
    grad = np.zeros_like(a)
    rows = np.arange(y.shape[0])
    grad[rows, y] = -1.0 / a[rows, y]
    return grad


def _svm_margins(a: Array, y: Array) -> Array:
    """CS231n's max(0, s_j - s_y + 1), 0 at each sample's own class: (batch, classes)."""
    margins = a - picked(a, y)
    margins += 1.0
    if is_labels(y):
        margins[np.arange(y.shape[0]), y] = 0.0
    else:
        margins[y != 0] = 0.0  # one-hot: the 1 marks the sample's class
    return np.maximum(margins, 0.0, out=margins)


def _svm_grad_a(z: Array, a: Array, y: Array) -> Array:
    # CS231n's svm_loss: 1 where a margin is positive (0 at exactly 0, as torch's relu and
    # multi_margin_loss), and minus their count at the sample's own class
    grad = (_svm_margins(a, y) > 0).astype(np.float64)
    counts = grad.sum(axis=1)
    if is_labels(y):
        grad[np.arange(y.shape[0]), y] = -counts
    else:
        grad -= y * counts[:, None]
    return grad


def _hinge_grad_a(z: Array, a: Array, y: Array) -> Array:
    # d/da max(0, 1 - y a) = -y where the margin 1 - y a is positive, 0 at exactly 0
    return np.where(1.0 - y * a > 0, -y, 0.0)


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
            total=_cross_entropy_total,
            grad_a=_cross_entropy_grad_a,
            requires_activation="softmax",
            mean_over_elements=False,
            takes_labels=True,
        ),
        Loss(
            # CS231n's multiclass SVM: sum over j != y of max(0, s_j - s_y + 1), per sample
            "svm",
            total=lambda z, a, y: float(np.sum(_svm_margins(a, y))),
            grad_a=_svm_grad_a,
            mean_over_elements=False,
            takes_labels=True,
        ),
        Loss(
            # binary hinge, targets in {-1, +1}: max(0, 1 - y s) per element
            "hinge",
            total=lambda z, a, y: float(np.sum(np.maximum(1.0 - y * a, 0.0))),
            grad_a=_hinge_grad_a,
        ),
    )
}

REDUCTIONS = ("mean", "sum")
