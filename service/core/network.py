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
service.core.layers; the records it reads and answers in service.core.problem,
the objective it differentiates in service.core.objective.  The reduction's
scale (1/N for "mean") is already inside dz, so a bias's gradient is a plain sum
over the batch axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .activations import get_activation
from .budget import NO_DEADLINE, Deadline
from .errors import NonFiniteResult
from .layers import KINDS, Kind
from .losses import LOSSES
from .objective import l2_gradient_factor, loss_scale, loss_value
from .problem import Forward, Gradients, Layer, LayerResult, Problem

Array = np.ndarray

#: dz_rule(layer, z, a, dL_da, correct_dz) -> dz: how a layer turns dL/da into dL/dz.
#: The correct rule returns correct_dz; the autograder's mistakes return something else.
DzRule = Callable[[int, Array, Array, Callable[[], Array], Array], Array]


#: kind_of(layer index, layer) -> the Kind that computes it.  The service's is each layer's
#: own kind; the autograder's puts a student's version of a kind in some layers
#: (service.core.kind_mistakes).
KindOf = Callable[[int, Layer], Kind]


def own_kind(i: int, layer: Layer) -> Kind:
    return KINDS[layer.kind]


def forward(
    problem: Problem, deadline: Deadline = NO_DEADLINE, kind_of: KindOf = own_kind
) -> Forward:
    zs: list[Array] = []
    outs: list[Array] = []
    caches: list[Any] = []
    a = problem.inputs
    for i, layer in enumerate(problem.layers):
        deadline.check()
        z, cache = kind_of(i, layer).forward(a, layer.params, layer.settings)
        a = get_activation(layer.activation).forward(z)
        zs.append(z)
        outs.append(a)
        caches.append(cache)
    return Forward(tuple(zs), tuple(outs), tuple(caches))


def backward(
    problem: Problem,
    fwd: Forward,
    dz_rule: DzRule | None = None,
    scale: float | None = None,
    deadline: Deadline = NO_DEADLINE,
    keep_dx: bool = False,
    param_scale: float | None = None,
    dx_rule: Callable[[int, Array, Array], Array] | None = None,
    kind_of: KindOf = own_kind,
) -> Gradients:
    """The loss and every layer's dz and parameter gradients (and dx), given the forward pass.

    ``dz_rule``, ``scale`` (the factor inside dL/da) and ``param_scale`` (a factor on
    every parameter gradient, before l2) exist for the autograder, which recomputes the
    backward pass with a student's mistake made, the reduction's 1/N placed where the
    student put it; the service passes none.  Left out, they follow ``problem.dz_scale``:
    "reduced" puts the 1/N inside dL/da, "per_sample" in the parameter gradients.
    ``dx_rule(layer, dz, correct_dx) -> dx``: how a layer hands dL/da to the layer below
    (the autograder's missing weights).  ``kind_of``: which Kind computes each layer (the
    autograder's mistakes inside a kind; forward's too).
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
        kind = kind_of(i, layer)
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
