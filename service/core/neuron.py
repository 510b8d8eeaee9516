"""One neuron, every chain-rule term: the bias-derivative calculator.

    z = w . x + b,  a = f(z),  L = loss(a, y)
    dL/db = dL/da * da/dz * dz/db,  and dz/db = 1

For one sample "mean" and "sum" reductions coincide, so there is none here.
The terms come from the same activation and loss tables as the network, so
the calculator and /v1/gradients can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .activations import get_activation
from .budget import NO_DEADLINE, Deadline
from .errors import NonFiniteResult
from .losses import LOSSES

Array = np.ndarray


@dataclass(frozen=True)
class NeuronProblem:
    x: Array  # () or (n,)
    w: Array  # same shape as x
    b: float
    y: float
    activation: str
    loss: str
    learning_rate: float = 0.1
    #: sample the loss at this many values of b around b (0: none)
    curve_points: int = 0
    #: ... from b - curve_span to b + curve_span
    curve_span: float = 2.0
    #: take this many gradient-descent steps in b, w held fixed (0: none)
    steps: int = 0


@dataclass(frozen=True)
class Curve:
    b: Array
    loss: Array


@dataclass(frozen=True)
class NeuronTerms:
    z: float
    a: float
    loss: float
    dL_da: float
    da_dz: float
    dz_db: float
    dL_dz: float
    dL_db: float
    dL_dw: Array  # shape of w
    b_next: float
    w_next: Array  # shape of w
    numerical_dL_db: float
    #: the loss as a function of b, w held fixed
    loss_curve: Curve | None = None
    #: b and the loss after each of the requested descent steps, starting at b
    trajectory: Curve | None = None


def _loss_at(problem: NeuronProblem, b: float) -> float:
    activation, loss = get_activation(problem.activation), LOSSES[problem.loss]
    z = np.array([[np.sum(problem.w * problem.x) + b]])
    return loss.total(z, activation.forward(z), np.array([[problem.y]]))


def neuron_terms(problem: NeuronProblem, deadline: Deadline = NO_DEADLINE) -> NeuronTerms:
    """Every term; an overflow is reported by name rather than raised by NumPy."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        terms = replace(
            _terms(problem),
            loss_curve=_loss_curve(problem, deadline),
            trajectory=_descent(problem, deadline),
        )
    for name, value in vars(terms).items():
        if isinstance(value, Curve):
            name, value = f"{name}.loss", value.loss
        if value is not None and not np.isfinite(value).all():
            raise NonFiniteResult(
                name,
                f"{name} overflowed to a non-finite value (z = {terms.z:.6g} saturates "
                f"the {problem.activation}); use smaller inputs, weights or bias.",
            )
    return terms


def _terms(problem: NeuronProblem) -> NeuronTerms:
    activation, loss = get_activation(problem.activation), LOSSES[problem.loss]
    z = np.array([[np.sum(problem.w * problem.x) + problem.b]])
    a = activation.forward(z)
    y = np.array([[problem.y]])

    dL_dz = float(loss.grad_z(z, a, y, activation)[0, 0])
    dL_dw = dL_dz * problem.x
    # Central difference, step scaled to b so it is neither lost nor too coarse.
    h = 1e-6 * max(1.0, abs(problem.b))
    numerical = (_loss_at(problem, problem.b + h) - _loss_at(problem, problem.b - h)) / (2 * h)

    return NeuronTerms(
        z=float(z[0, 0]),
        a=float(a[0, 0]),
        loss=loss.total(z, a, y),
        dL_da=float(loss.grad_a(z, a, y)[0, 0]),
        da_dz=float(activation.derivative(z, a)[0, 0]),
        dz_db=1.0,
        dL_dz=dL_dz,
        dL_db=dL_dz,
        dL_dw=dL_dw,
        b_next=problem.b - problem.learning_rate * dL_dz,
        w_next=problem.w - problem.learning_rate * dL_dw,
        numerical_dL_db=float(numerical),
    )


def _loss_curve(problem: NeuronProblem, deadline: Deadline) -> Curve | None:
    if not problem.curve_points:
        return None
    bs = np.linspace(
        problem.b - problem.curve_span, problem.b + problem.curve_span, problem.curve_points
    )
    losses = []
    for b in bs:
        deadline.check()
        losses.append(_loss_at(problem, b))
    return Curve(b=bs, loss=np.array(losses))


def _descent(problem: NeuronProblem, deadline: Deadline) -> Curve | None:
    if not problem.steps:
        return None
    bs, losses = [problem.b], [_loss_at(problem, problem.b)]
    for _ in range(problem.steps):
        deadline.check()
        step = _terms(replace(problem, b=bs[-1]))
        bs.append(step.b_next)
        losses.append(_loss_at(problem, step.b_next))
    return Curve(b=np.array(bs), loss=np.array(losses))
