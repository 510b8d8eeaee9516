"""The core's records: a problem (layers and data, canonical shapes) and what a pass answers.

Values only, no behaviour beyond reading them: service.core.network runs the passes,
service.core.layers holds each kind's forward and backward.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .layers import KINDS

Array = np.ndarray
L2_STYLES = ("half", "full")
DZ_SCALES = ("reduced", "per_sample")


@dataclass(frozen=True)
class Layer:
    """One layer: its kind, its learned parameters, its activation, and its kind's settings.

    ``params`` holds the parameters the layer has, by name, in its kind's order
    (a dense layer without a bias has no "biases"); each has a gradient
    (``Kind.gradients``).  ``settings`` holds what is not learned (a norm's eps
    and running statistics, dropout's mask): the kind reads them, nothing
    differentiates them.
    """

    kind: str
    params: Mapping[str, Array]
    activation: str = "identity"
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> Array | None:
        return self.params.get("weights")

    @property
    def biases(self) -> Array | None:
        return self.params.get("biases")

    def units_out(self, n_in: int) -> int:
        return KINDS[self.kind].units_out(n_in, self.params)

    def sample_out(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """One sample's shape out for one sample's shape in: (n,) flat, (C, H, W) an image."""
        return KINDS[self.kind].out_shape(shape, self.params, self.settings)

    def held_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The shapes of the arrays among its settings (a sent mask): the request holds them."""
        return tuple(v.shape for v in self.settings.values() if isinstance(v, np.ndarray))

    def state_shapes(self, batch: int, n_in: int) -> dict[str, tuple[int, ...]]:
        """What its answer will carry besides gradients, before anything runs."""
        return KINDS[self.kind].state_shapes(batch, n_in, self.settings)

    def with_params(self, **params: Array) -> Layer:
        """The same layer with some parameters replaced (a gradient step, a nudge)."""
        return replace(self, params={**self.params, **params})


def dense_layer(weights: Array, biases: Array | None, activation: str) -> Layer:
    """z = x @ weights (+ biases): weights (n_in, n_out), biases (n_out,) or None."""
    params = {"weights": weights} if biases is None else {"weights": weights, "biases": biases}
    return Layer("dense", params, activation)


@dataclass(frozen=True)
class Problem:
    inputs: Array  # (batch, n_in), or (batch, C, H, W) images (canonical NCHW)
    #: (batch, n_out), or int64 class labels (batch,) for a loss that takes them
    #: (service.core.losses); None when upstream is sent
    targets: Array | None
    layers: tuple[Layer, ...]
    loss: str | None
    reduction: str = "mean"
    l2: float = 0.0
    #: "half": 0.5 * l2 * sum(W^2), gradient l2 * W; "full" (CS231n): l2 * sum(W^2), 2 * l2 * W
    l2_style: str = "half"
    #: dL/d(the last layer's output after its activation), instead of targets and a loss
    upstream: Array | None = None
    #: where the reduction's 1/N goes: "reduced" (PyTorch, CS231n: inside dL/da, so in every
    #: dz and dx) or "per_sample" (Andrew Ng's course: dz without it, dW and db with it)
    dz_scale: str = "reduced"


@dataclass(frozen=True)
class LayerResult:
    z: Array  # (batch, n_out) the kind's output, before the activation
    a: Array  # (batch, n_out) activation
    dz: Array  # (batch, n_out) dL/dz
    dx: Array | None  # (batch, n_in) dL/d(the layer's input); None unless asked (keep_dx)
    grads: Mapping[str, Array] = field(default_factory=dict)  # gradient name -> array
    #: arrays the kind answers besides its gradients (batchnorm's updated running
    #: statistics, dropout's drawn mask), by name
    state: Mapping[str, Array] = field(default_factory=dict)

    @property
    def dW(self) -> Array:
        return self.grads["dW"]

    @property
    def db(self) -> Array | None:
        return self.grads.get("db")


@dataclass(frozen=True)
class Gradients:
    loss: float | None  # None when the problem sends upstream
    layers: tuple[LayerResult, ...]


@dataclass(frozen=True)
class Forward:
    zs: tuple[Array, ...]  # per layer, (batch, n_out)
    outs: tuple[Array, ...]  # per layer, (batch, n_out)
    caches: tuple[Any, ...] = ()  # per layer, what its kind's backward needs
