"""Numerical gradient check: every parameter's analytic gradient against central differences.

The relative error of each entry is |analytic - numeric| / max(|analytic|,
|numeric|, TINY), the definition used by most course notes; TINY keeps
entries that are zero in both from dividing by zero.  Only the layers from
the nudged one onward are recomputed for each nudge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import get_activation
from .budget import NO_DEADLINE, Deadline
from .layers import KINDS
from .network import Gradients, Layer, Problem, loss_scale, loss_value

EPSILON = 1e-5
TINY = 1e-8


#: per layer: gradient name (dW, db, dgamma, ..., and dx when checked) -> largest relative error
LayerCheck = dict[str, float]


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
    check_dx: bool = False,
) -> GradientCheck:
    """Every parameter's gradient (and, with ``check_dx``, every layer's dx) against
    central differences of the loss."""
    with np.errstate(all="ignore"):
        inputs_to = _layer_inputs(problem)
        checks = []
        for i, layer in enumerate(problem.layers):
            errors: LayerCheck = {}
            gradients = KINDS[layer.kind].gradients
            for name in layer.params:
                numeric = _numeric_param(problem, i, name, inputs_to[i], epsilon, deadline)
                errors[gradients[name]] = _worst(analytic.layers[i].grads[gradients[name]], numeric)
            if check_dx:
                numeric = _numeric_input(problem, i, inputs_to[i], epsilon, deadline)
                dx = analytic.layers[i].dx
                if problem.dz_scale == "per_sample":  # dx without the reduction's 1/N
                    dx = loss_scale(problem) * dx
                errors["dx"] = _worst(dx, numeric)
            checks.append(errors)
    worst = max((e for c in checks for e in c.values()), default=0.0)
    return GradientCheck(epsilon=epsilon, max_relative_error=worst, layers=tuple(checks))


def _worst(analytic: np.ndarray, numeric: np.ndarray) -> float:
    return float(relative_error(analytic, numeric).max(initial=0.0))


def _layer_inputs(problem: Problem) -> list[np.ndarray]:
    """a_prev of every layer, computed once."""
    inputs, a = [], problem.inputs
    for layer in problem.layers:
        inputs.append(a)
        a = get_activation(layer.activation).forward(_kind_out(layer, a))
    return inputs


def _kind_out(layer: Layer, a: np.ndarray) -> np.ndarray:
    return KINDS[layer.kind].forward(a, layer.params, layer.settings)[0]


def _central(original: np.ndarray, loss_at, eps: float, deadline: Deadline) -> np.ndarray:
    """d loss / d original, one entry at a time: (loss(x + eps) - loss(x - eps)) / 2 eps."""
    numeric = np.empty_like(original)
    for index in np.ndindex(original.shape):
        deadline.check()
        sides = []
        for step in (eps, -eps):
            nudged = original.copy()
            nudged[index] += step
            sides.append(loss_at(nudged))
        numeric[index] = (sides[0] - sides[1]) / (2 * eps)
    return numeric


def _numeric_param(
    problem: Problem, start: int, name: str, a_in: np.ndarray, eps: float, deadline: Deadline
) -> np.ndarray:
    layer = problem.layers[start]
    return _central(
        layer.params[name],
        lambda nudged: _loss_from(problem, start, layer.with_params(**{name: nudged}), a_in),
        eps,
        deadline,
    )


def _numeric_input(
    problem: Problem, start: int, a_in: np.ndarray, eps: float, deadline: Deadline
) -> np.ndarray:
    layer = problem.layers[start]
    return _central(a_in, lambda nudged: _loss_from(problem, start, layer, nudged), eps, deadline)


def _loss_from(problem: Problem, start: int, replaced: Layer, a: np.ndarray) -> float:
    layers = [*problem.layers[:start], replaced, *problem.layers[start + 1 :]]
    z = a
    for layer in layers[start:]:
        z = _kind_out(layer, a)
        a = get_activation(layer.activation).forward(z)
    return loss_value(problem, z, a, layers=tuple(layers))
