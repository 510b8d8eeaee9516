"""Activation functions, each forward formula beside its backward pass.

Arrays here are canonical: z and a are (batch, units), samples are rows.
Every backward function is a vector-Jacobian product: given z, a = f(z) and
the upstream gradient dL/da, it returns dL/dz.  For elementwise activations
that is dL/da * f'(z); softmax needs the full Jacobian-vector product.

Derivatives are written in forms that stay exact where the textbook form
loses precision: sigmoid'(z) is e/(1+e)^2 with e = exp(-|z|) rather than
a(1-a), which cancels to nothing once the sigmoid saturates.

Adding an activation is adding one entry to ``ACTIVATIONS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LEAKY_RELU_SLOPE = 0.01

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[Array], Array]
    #: backward(z, a, dL_da) -> dL_dz
    backward: Callable[[Array, Array, Array], Array]
    #: elementwise f'(z), for the single-neuron calculator; None for softmax
    derivative: Callable[[Array, Array], Array] | None


def sigmoid(z: Array) -> Array:
    """1 / (1 + exp(-z)), without overflow for large negative z."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_derivative(z: Array, a: Array) -> Array:
    e = np.exp(-np.abs(z))
    return e / (1.0 + e) ** 2


def _tanh_derivative(z: Array, a: Array) -> Array:
    # 1 - tanh(z)^2 == 1 / cosh(z)^2 == 4e / (1 + e)^2 with e = exp(-2|z|)
    e = np.exp(-2.0 * np.abs(z))
    return 4.0 * e / (1.0 + e) ** 2


def _relu_derivative(z: Array, a: Array) -> Array:
    # PyTorch's convention: the derivative at the kink z == 0 is 0.
    return (z > 0).astype(np.float64)


def _leaky_relu(z: Array) -> Array:
    return np.where(z > 0, z, LEAKY_RELU_SLOPE * z)


def _leaky_relu_derivative(z: Array, a: Array) -> Array:
    # PyTorch's convention: at z == 0 the slope is the negative one.
    return np.where(z > 0, 1.0, LEAKY_RELU_SLOPE)


def _softplus(z: Array) -> Array:
    # Exactly log(1 + e^z), stable for large |z| (no threshold shortcut).
    return np.logaddexp(0.0, z)


def softmax(z: Array) -> Array:
    """Softmax over the unit axis (axis 1), shifted by the row maximum."""
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def _softmax_backward(z: Array, a: Array, upstream: Array) -> Array:
    # J^T g for J = diag(a) - a a^T, one row per sample.
    return a * (upstream - np.sum(upstream * a, axis=1, keepdims=True))


def _elementwise(name: str, forward, derivative) -> Activation:
    return Activation(
        name=name,
        forward=forward,
        backward=lambda z, a, upstream: upstream * derivative(z, a),
        derivative=derivative,
    )


ACTIVATIONS: dict[str, Activation] = {
    activation.name: activation
    for activation in (
        # dL/dz is dL/da itself: no (batch, n) array of ones, no multiply (a dropout layer's
        # default activation; nothing in the core writes into a dz in place)
        Activation(
            "identity",
            lambda z: z,
            lambda z, a, upstream: upstream,
            derivative=lambda z, a: np.ones_like(z),
        ),
        _elementwise("sigmoid", sigmoid, _sigmoid_derivative),
        _elementwise("tanh", np.tanh, _tanh_derivative),
        _elementwise("relu", lambda z: np.maximum(z, 0.0), _relu_derivative),
        _elementwise("leaky_relu", _leaky_relu, _leaky_relu_derivative),
        _elementwise("softplus", _softplus, lambda z, a: sigmoid(z)),
        Activation("softmax", softmax, _softmax_backward, derivative=None),
    )
}

#: Other names clients use for the same function.
ALIASES: dict[str, str] = {"linear": "identity"}

#: Activations that make sense for a single scalar neuron.
ELEMENTWISE = tuple(name for name, act in ACTIVATIONS.items() if act.derivative is not None)


def get_activation(name: str) -> Activation:
    return ACTIVATIONS[ALIASES.get(name, name)]
