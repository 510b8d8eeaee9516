"""The mistaken rules the autograder recomputes backward passes with (service.core.mistakes).

A dz rule ``(layer, z, a, dL_da, correct_dz) -> dz`` replaces how a layer turns dL/da into
dL/dz (network.backward's ``dz_rule``); a dx rule ``(layer, dz, correct_dx) -> dx`` how it
hands dL/da to the layer below (``dx_rule``).  Each is a student's formula, written as the
student writes it, on canonical (batch, units) arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .activations import ALIASES, get_activation
from .losses import minus_targets
from .network import Problem

Array = np.ndarray

#: The derivative formulas written in terms of the activation's output a,
#: which students then evaluate at the wrong quantity.
OUTPUT_FORM_DERIVATIVES: dict[str, Callable[[Array], Array]] = {
    "sigmoid": lambda s: s * (1.0 - s),
    "tanh": lambda s: 1.0 - s**2,
}


def flip_output(last: int):
    def flip_output(i, z, a, dL_da, dz):
        return -dz if i == last else dz

    return flip_output


def at_output(last: int, rule, problem: Problem, scale: float):
    def dz_rule(i, z, a, dL_da, dz):
        return rule(problem, z, a, dL_da, scale) if i == last else dz

    return dz_rule


def labels_as_numbers(problem, z, a, dL_da, scale):
    # dscores = probs - y[:, None]: the label index subtracted from every class's score
    return scale * (a - problem.targets[:, None])


def margin_of_correct_class(problem, z, a, dL_da, scale):
    # margins = np.maximum(0, s - s_y + 1) without zeroing j = y: 1 there, counted as positive
    one_hot = minus_targets(np.zeros_like(a), problem.targets)  # -1 at each sample's class
    upstream = dL_da() + scale * one_hot
    return get_activation(problem.layers[-1].activation).backward(z, a, upstream)


def chain_without_weights(problem: Problem, i: int) -> bool:
    """Whether dA_prev = dZ (no weights) runs in NumPy: a dense layer whose dz has one
    column (it broadcasts) or as many as its input."""
    layer = problem.layers[i]
    if layer.kind != "dense":
        return False
    n_in, n_out = layer.weights.shape
    return n_out in (1, n_in)


def without_weights(scope: tuple[int, ...]):
    def dx_rule(i, dz, dx):
        return np.broadcast_to(dz, dx.shape).copy() if i in scope else dx

    return dx_rule


def preactivation_derivative(problem, i, z, a, dL_da, dz):
    # sigmoid'(z) written as z (1 - z), tanh'(z) as 1 - z^2: the formula for a, fed z
    return dL_da() * OUTPUT_FORM_DERIVATIVES[activation(problem, i)](z)


def missing_derivative(problem, i, z, a, dL_da, dz):
    return dL_da()


def derivative_of_error(problem, i, z, a, dL_da, dz):
    # dz2 = dh2 * (1 - dh2) with dh2 = h2 - y: the formula for a, fed the error
    return OUTPUT_FORM_DERIVATIVES[activation(problem, i)](dL_da())


def derivative_of_raw_error(problem, i, z, a, dL_da, dz):
    # the same, with the output's error taken as a - y whatever the loss and reduction
    # (the seed's dh2 = h2 - y), and the error coming back to a hidden layer as it is
    is_output = i == len(problem.layers) - 1
    error = minus_targets(a, problem.targets) if is_output else dL_da()
    return OUTPUT_FORM_DERIVATIVES[activation(problem, i)](error)


def activation(problem: Problem, i: int) -> str:
    name = problem.layers[i].activation
    return ALIASES.get(name, name)


def has_output_form(name: str, is_output: bool, problem: Problem) -> bool:
    return name in OUTPUT_FORM_DERIVATIVES


def has_a_derivative(name: str, is_output: bool, problem: Problem) -> bool:
    return name != "identity"
