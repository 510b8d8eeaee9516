"""Forward pass and backpropagation through a sequence of layer kinds.

The core is stateless and sees canonical shapes only (the schemas convert the
client's convention in and back out):

    inputs  (batch, n_in)      targets, upstream (batch, n_out)
                               or targets as int64 class labels (batch,)
    each layer: z = kind.forward(a_prev, params), a = f(z)

Backward, for every layer from the last:

    dz = f'(z) applied to dL/da          (dL/da: from the loss, or the client's upstream)
    dx, grads = kind.backward(dz)        (dW (+ l2 * W), db for dense)
    dL/da of the layer below = dx

The loop knows no kind: each one's forward and backward live in
service.core.layers.  The reduction's scale (1/N for "mean") is already inside
dz, so a bias's gradient is a plain sum over the batch axis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .activations import get_activation
from .budget import NO_DEADLINE, Deadline
from .errors import NonFiniteResult
from .layers import KINDS
from .losses import LOSSES

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
    inputs: Array  # (batch, n_in)
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


#: dz_rule(layer, z, a, dL_da, correct_dz) -> dz: how a layer turns dL/da into dL/dz.
#: The correct rule returns correct_dz; the autograder's mistakes return something else.
DzRule = Callable[[int, Array, Array, Callable[[], Array], Array], Array]


def forward(problem: Problem, deadline: Deadline = NO_DEADLINE) -> Forward:
    zs: list[Array] = []
    outs: list[Array] = []
    caches: list[Any] = []
    a = problem.inputs
    for layer in problem.layers:
        deadline.check()
        z, cache = KINDS[layer.kind].forward(a, layer.params, layer.settings)
        a = get_activation(layer.activation).forward(z)
        zs.append(z)
        outs.append(a)
        caches.append(cache)
    return Forward(tuple(zs), tuple(outs), tuple(caches))


def loss_scale(problem: Problem) -> float:
    """The factor the reduction applies to the summed loss and to dL/dz (1 with upstream)."""
    if problem.upstream is not None:
        return 1.0
    batch, n_out = output_shape(problem)
    return LOSSES[problem.loss].reduce_scale(problem.reduction, batch, n_out)


def output_shape(problem: Problem) -> tuple[int, int]:
    """(batch, n_out) of the last layer's output, whether the targets are dense or labels."""
    batch, n = problem.inputs.shape
    for layer in problem.layers:
        n = layer.units_out(n)
    return batch, n


def l2_penalty(problem: Problem, layers: tuple[Layer, ...] | None = None) -> float:
    layers = problem.layers if layers is None else layers
    factor = 0.5 * problem.l2 if problem.l2_style == "half" else problem.l2
    return factor * sum(
        float(np.sum(layer.params[name] ** 2))
        for layer in layers
        for name in KINDS[layer.kind].regularised
        if name in layer.params
    )


def l2_gradient_factor(problem: Problem) -> float:
    return problem.l2 if problem.l2_style == "half" else 2.0 * problem.l2


def loss_value(
    problem: Problem,
    z_out: Array,
    a_out: Array,
    scale: float | None = None,
    layers: tuple[Layer, ...] | None = None,
) -> float:
    """The reduced loss plus the l2 penalty of ``layers`` (the problem's own by default).

    With upstream, the function whose gradient backward computes: sum(upstream * a_out)
    (what the gradient check differentiates; the answer's loss is null).
    """
    if problem.upstream is not None:
        loss = float(np.sum(problem.upstream * a_out))
    else:
        scale = loss_scale(problem) if scale is None else scale
        loss = scale * LOSSES[problem.loss].total(z_out, a_out, problem.targets)
    if problem.l2:
        loss += l2_penalty(problem, layers)
    return loss


def backward(
    problem: Problem,
    fwd: Forward,
    dz_rule: DzRule | None = None,
    scale: float | None = None,
    deadline: Deadline = NO_DEADLINE,
    keep_dx: bool = False,
    param_scale: float | None = None,
    dx_rule: Callable[[int, Array, Array], Array] | None = None,
) -> Gradients:
    """The loss and every layer's dz and parameter gradients (and dx), given the forward pass.

    ``dz_rule``, ``scale`` (the factor inside dL/da) and ``param_scale`` (a factor on
    every parameter gradient, before l2) exist for the autograder, which recomputes the
    backward pass with a student's mistake made, the reduction's 1/N placed where the
    student put it; the service passes none.  Left out, they follow ``problem.dz_scale``:
    "reduced" puts the 1/N inside dL/da, "per_sample" in the parameter gradients.
    ``dx_rule(layer, dz, correct_dx) -> dx``: how a layer hands dL/da to the layer below
    (the autograder's missing weights).
    ``keep_dx``: keep every layer's dx in the answer, layer 0's (dL/d inputs) included;
    otherwise each dx lives only as long as the step that needs it.
    ``deadline`` is checked between layers: a pass over the budget ends there.
    """
    activations = [get_activation(layer.activation) for layer in problem.layers]
    zs, outs = fwd.zs, fwd.outs
    last = len(problem.layers) - 1

    if problem.upstream is None:
        loss_fn, y = LOSSES[problem.loss], problem.targets
        reduce = loss_scale(problem)
        if scale is None and param_scale is None and problem.dz_scale == "per_sample":
            scale, param_scale = 1.0, reduce  # Andrew Ng's dZ = A - Y, dW = 1/m dZ A.T
        scale = reduce if scale is None else scale
        loss = loss_value(problem, zs[-1], outs[-1], scale * (param_scale or 1.0))
        dz = scale * loss_fn.grad_z(zs[last], outs[last], y, activations[last])

        def dL_da() -> Array:
            return scale * loss_fn.grad_a(zs[last], outs[last], y)
    else:
        loss = None
        dz = activations[last].backward(zs[last], outs[last], problem.upstream)

        def dL_da() -> Array:
            return problem.upstream

    if dz_rule is not None:
        dz = dz_rule(last, zs[last], outs[last], dL_da, dz)
    l2_factor = l2_gradient_factor(problem)
    results: list[LayerResult] = [None] * (last + 1)  # type: ignore[list-item]
    for i in range(last, -1, -1):
        deadline.check()
        layer = problem.layers[i]
        kind = KINDS[layer.kind]
        dx, grads = kind.backward(dz, fwd.caches[i], i > 0 or keep_dx)
        if dx_rule is not None and dx is not None:
            dx = dx_rule(i, dz, dx)
        if param_scale is not None and param_scale != 1.0:
            grads = {name: param_scale * value for name, value in grads.items()}
        if problem.l2:
            for name in kind.regularised:
                grads[kind.gradients[name]] += l2_factor * layer.params[name]
        results[i] = LayerResult(
            z=zs[i],
            a=outs[i],
            dz=dz,
            dx=dx if keep_dx else None,
            grads=grads,
            state=kind.state(fwd.caches[i], layer.settings),
        )
        if i > 0:
            dz = activations[i - 1].backward(zs[i - 1], outs[i - 1], dx)
            if dz_rule is not None:
                dz = dz_rule(i - 1, zs[i - 1], outs[i - 1], lambda u=dx: u, dz)

    return Gradients(loss=None if loss is None else float(loss), layers=tuple(results))


def compute_gradients(
    problem: Problem,
    fwd: Forward | None = None,
    deadline: Deadline = NO_DEADLINE,
    keep_dx: bool = False,
) -> Gradients:
    """Loss, activations and every layer's gradients for one batch.

    Overflow is not an exception here: it is detected once at the end and
    reported with the layer it happened in.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        fwd = forward(problem, deadline) if fwd is None else fwd
        result = backward(problem, fwd, deadline=deadline, keep_dx=keep_dx)
    _require_finite(result)
    return result


def gradient_step(problem: Problem, result: Gradients, learning_rate: float) -> tuple[Layer, ...]:
    """Every layer after one step of gradient descent: p - lr * dp for each parameter p.

    A huge learning rate can overflow a finite gradient: that is refused by
    name, like any other overflow, rather than answered as null or Infinity.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        layers = tuple(
            layer.with_params(
                **{
                    name: value - learning_rate * out.grads[KINDS[layer.kind].gradients[name]]
                    for name, value in layer.params.items()
                }
            )
            for layer, out in zip(problem.layers, result.layers)
        )
    for i, layer in enumerate(layers):
        if not all(np.isfinite(value).all() for value in layer.params.values()):
            raise NonFiniteResult(
                "learning_rate",
                f"the gradient step overflowed to a non-finite value in layer {i}: "
                "learning_rate times a gradient is too large for float64; "
                "choose a smaller learning_rate.",
            )
    return layers


def _require_finite(result: Gradients) -> None:
    """JSON cannot carry inf or nan: name the first layer that overflowed."""
    named = [
        {"z": out.z, "a": out.a, "dz": out.dz, **out.grads, **out.state} for out in result.layers
    ]
    named += [{"dx": out.dx} for out in result.layers]  # layer i's dx is layer i-1's dL/da
    for j, arrays in enumerate(named):
        i = j % len(result.layers)
        for name, array in arrays.items():
            if array is not None and not np.isfinite(array).all():
                raise NonFiniteResult(
                    f"layers.{i}",
                    f"layer {i}'s {name} overflowed to a non-finite value; "
                    "the weights or inputs are too large for float64 "
                    "(scale them down).",
                )
    if result.loss is not None and not np.isfinite(result.loss):
        raise NonFiniteResult(
            "loss", "the loss overflowed to a non-finite value; scale the inputs or weights down."
        )
