"""Forward pass and backpropagation through a stack of dense layers.

The core is stateless and sees canonical shapes only (the schemas convert the
client's convention in and back out):

    inputs  (batch, n_in)      targets (batch, n_out)
    weights (n_in, n_out)      biases  (n_out,)
    z = a_prev @ W + b,  a = f(z)

Backward, for every layer from the last:

    dW = a_prev.T @ dz (+ l2 * W)
    db = dz.sum(axis=0)          # dz/db is 1 for every sample: sum over the batch
    dz_prev = f_prev'(z_prev) applied to (dz @ W.T)

The reduction's scale (1/N for "mean") is already inside dz, so db is a plain
sum over the batch axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .activations import get_activation
from .budget import NO_DEADLINE, Deadline
from .errors import NonFiniteResult
from .losses import LOSSES

Array = np.ndarray


@dataclass(frozen=True)
class Layer:
    weights: Array  # (n_in, n_out)
    biases: Array  # (n_out,)
    activation: str


@dataclass(frozen=True)
class Problem:
    inputs: Array  # (batch, n_in)
    targets: Array  # (batch, n_out)
    layers: tuple[Layer, ...]
    loss: str
    reduction: str = "mean"
    l2: float = 0.0


@dataclass(frozen=True)
class LayerResult:
    z: Array  # (batch, n_out) pre-activation
    a: Array  # (batch, n_out) activation
    dz: Array  # (batch, n_out) dL/dz
    dW: Array  # (n_in, n_out)
    db: Array  # (n_out,)


@dataclass(frozen=True)
class Gradients:
    loss: float
    layers: tuple[LayerResult, ...]


@dataclass(frozen=True)
class Forward:
    zs: tuple[Array, ...]  # per layer, (batch, n_out)
    outs: tuple[Array, ...]  # per layer, (batch, n_out)


#: dz_rule(layer, z, a, dL_da, correct_dz) -> dz: how a layer turns dL/da into dL/dz.
#: The correct rule returns correct_dz; the autograder's mistakes return something else.
DzRule = Callable[[int, Array, Array, Callable[[], Array], Array], Array]


def forward(problem: Problem, deadline: Deadline = NO_DEADLINE) -> Forward:
    zs: list[Array] = []
    outs: list[Array] = []
    a = problem.inputs
    for layer in problem.layers:
        deadline.check()
        z = a @ layer.weights + layer.biases
        a = get_activation(layer.activation).forward(z)
        zs.append(z)
        outs.append(a)
    return Forward(tuple(zs), tuple(outs))


def loss_scale(problem: Problem) -> float:
    """The factor the reduction applies to the summed loss and to dL/dz."""
    batch, n_out = problem.targets.shape
    return LOSSES[problem.loss].reduce_scale(problem.reduction, batch, n_out)


def loss_value(
    problem: Problem,
    z_out: Array,
    a_out: Array,
    scale: float | None = None,
    layers: tuple[Layer, ...] | None = None,
) -> float:
    """The reduced loss plus the l2 penalty of ``layers`` (the problem's own by default)."""
    scale = loss_scale(problem) if scale is None else scale
    loss = scale * LOSSES[problem.loss].total(z_out, a_out, problem.targets)
    if problem.l2:
        layers = problem.layers if layers is None else layers
        loss += 0.5 * problem.l2 * sum(float(np.sum(layer.weights**2)) for layer in layers)
    return loss


def backward(
    problem: Problem,
    fwd: Forward,
    dz_rule: DzRule | None = None,
    scale: float | None = None,
    deadline: Deadline = NO_DEADLINE,
) -> Gradients:
    """The loss and every layer's dz, dW and db, given the forward pass.

    ``dz_rule`` and ``scale`` exist for the autograder, which recomputes the
    backward pass with a student's mistake made; the service passes neither.
    ``deadline`` is checked between layers: a pass over the budget ends there.
    """
    activations = [get_activation(layer.activation) for layer in problem.layers]
    loss_fn = LOSSES[problem.loss]
    scale = loss_scale(problem) if scale is None else scale
    zs, outs, y = fwd.zs, fwd.outs, problem.targets

    loss = loss_value(problem, zs[-1], outs[-1], scale)

    last = len(problem.layers) - 1
    dzs: list[Array] = [np.empty(0)] * (last + 1)
    dWs: list[Array] = [np.empty(0)] * (last + 1)
    dz = scale * loss_fn.grad_z(zs[last], outs[last], y, activations[last])
    if dz_rule is not None:
        dz = dz_rule(
            last, zs[last], outs[last], lambda: scale * loss_fn.grad_a(zs[last], outs[last], y), dz
        )
    for i in range(last, -1, -1):
        deadline.check()
        layer = problem.layers[i]
        a_prev = outs[i - 1] if i > 0 else problem.inputs
        dzs[i] = dz
        dWs[i] = a_prev.T @ dz
        if problem.l2:
            dWs[i] += problem.l2 * layer.weights
        if i > 0:
            upstream = dz @ layer.weights.T
            dz = activations[i - 1].backward(zs[i - 1], outs[i - 1], upstream)
            if dz_rule is not None:
                dz = dz_rule(i - 1, zs[i - 1], outs[i - 1], lambda u=upstream: u, dz)

    return Gradients(
        loss=float(loss),
        layers=tuple(
            LayerResult(z=z, a=a, dz=dz, dW=dW, db=dz.sum(axis=0))
            for z, a, dz, dW in zip(zs, outs, dzs, dWs)
        ),
    )


def compute_gradients(
    problem: Problem, fwd: Forward | None = None, deadline: Deadline = NO_DEADLINE
) -> Gradients:
    """Loss, activations and every layer's dW and db for one batch.

    Overflow is not an exception here: it is detected once at the end and
    reported with the layer it happened in.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        fwd = forward(problem, deadline) if fwd is None else fwd
        result = backward(problem, fwd, deadline=deadline)
    _require_finite(result)
    return result


def gradient_step(problem: Problem, result: Gradients, learning_rate: float) -> tuple[Layer, ...]:
    """Every layer after one step of gradient descent: W - lr * dW, b - lr * db.

    A huge learning rate can overflow a finite gradient: that is refused by
    name, like any other overflow, rather than answered as null or Infinity.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        layers = tuple(
            replace(
                layer,
                weights=layer.weights - learning_rate * out.dW,
                biases=layer.biases - learning_rate * out.db,
            )
            for layer, out in zip(problem.layers, result.layers)
        )
    for i, layer in enumerate(layers):
        if not (np.isfinite(layer.weights).all() and np.isfinite(layer.biases).all()):
            raise NonFiniteResult(
                "learning_rate",
                f"the gradient step overflowed to a non-finite value in layer {i}: "
                f"learning_rate * dW is too large for float64; choose a smaller learning_rate.",
            )
    return layers


def _require_finite(result: Gradients) -> None:
    """JSON cannot carry inf or nan: name the first layer that overflowed."""
    for i, layer in enumerate(result.layers):
        for name in ("z", "a", "dz", "dW", "db"):
            if not np.isfinite(getattr(layer, name)).all():
                raise NonFiniteResult(
                    f"layers.{i}",
                    f"layer {i}'s {name} overflowed to a non-finite value; "
                    "the weights or inputs are too large for float64 "
                    "(scale them down).",
                )
    if not np.isfinite(result.loss):
        raise NonFiniteResult(
            "loss", "the loss overflowed to a non-finite value; scale the inputs or weights down."
        )
