"""Numerical gradient check: every parameter's analytic gradient against central differences.

The relative error of each entry is |analytic - numeric| / max(|analytic|,
|numeric|, TINY), the definition used by most course notes; TINY keeps
entries that are zero in both from dividing by zero.  Only the layers from
the nudged one onward are recomputed for each nudge.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .activations import get_activation
from .budget import NO_DEADLINE, Deadline
from .layers import KINDS
from .network import Gradients, Layer, Problem, loss_value

EPSILON = 1e-5
TINY = 1e-8


@dataclass(frozen=True)
class LayerCheck:
    dW: float  # largest relative error over the layer's weights
    db: float | None  # largest relative error over the layer's biases; None without a bias


@dataclass(frozen=True)
class GradientCheck:
    epsilon: float
    max_relative_error: float
    layers: tuple[LayerCheck, ...]


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), TINY)
    return np.abs(analytic - numeric) / scale


def gradient_check(
    problem: Problem,
    analytic: Gradients,
    epsilon: float = EPSILON,
    deadline: Deadline = NO_DEADLINE,
) -> GradientCheck:
    with np.errstate(all="ignore"):
        inputs_to = _layer_inputs(problem)
        checks = []
        for i, layer in enumerate(problem.layers):
            errors = {}
            for name in layer.params:
                grad_name = KINDS[layer.kind].gradients[name]
                numeric = _numeric(problem, i, name, inputs_to[i], epsilon, deadline)
                errors[grad_name] = float(
                    relative_error(analytic.layers[i].grads[grad_name], numeric).max()
                )
            checks.append(LayerCheck(dW=errors["dW"], db=errors.get("db")))
    worst = max(e for c in checks for e in (c.dW, c.db) if e is not None)
    return GradientCheck(epsilon=epsilon, max_relative_error=worst, layers=tuple(checks))


def _layer_inputs(problem: Problem) -> list[np.ndarray]:
    """a_prev of every layer, computed once."""
    inputs, a = [], problem.inputs
    for layer in problem.layers:
        inputs.append(a)
        a = get_activation(layer.activation).forward(_kind_out(layer, a))
    return inputs


def _kind_out(layer: Layer, a: np.ndarray) -> np.ndarray:
    return KINDS[layer.kind].forward(a, layer.params)[0]


def _numeric(
    problem: Problem, start: int, name: str, a_in: np.ndarray, eps: float, deadline: Deadline
) -> np.ndarray:
    original = getattr(problem.layers[start], name)
    numeric = np.empty_like(original)
    for index in np.ndindex(original.shape):
        deadline.check()
        sides = []
        for step in (eps, -eps):
            nudged = original.copy()
            nudged[index] += step
            layer = replace(problem.layers[start], **{name: nudged})
            sides.append(_loss_from(problem, start, layer, a_in))
        numeric[index] = (sides[0] - sides[1]) / (2 * eps)
    return numeric


def _loss_from(problem: Problem, start: int, replaced: Layer, a: np.ndarray) -> float:
    layers = [*problem.layers[:start], replaced, *problem.layers[start + 1 :]]
    z = a
    for layer in layers[start:]:
        z = _kind_out(layer, a)
        a = get_activation(layer.activation).forward(z)
    return loss_value(problem, z, a, layers=tuple(layers))
