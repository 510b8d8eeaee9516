"""The dense (affine) layer: CS231n's affine_forward / affine_backward.

    out = x @ W (+ b)                 x (batch, n_in), W (n_in, n_out), b (n_out,)
    dW = x.T @ dout;  db = dout.sum(axis=0);  dx = dout @ W.T

db sums over the batch because b is added to every sample.  The bias is
optional (a bias-free layer has no "biases" and answers no db).
"""

from __future__ import annotations

from math import prod

from ..cost import SCRATCH, LayerCost, LayerShape
from .base import Array, Kind, Params, Settings


def forward(x: Array, params: Params, settings: Settings | None = None) -> tuple[Array, tuple]:
    weights, biases = params["weights"], params.get("biases")
    out = x @ weights
    if biases is not None:
        out += biases
    return out, (x, weights, biases is not None)


def backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    x, weights, has_bias = cache
    grads = {"dW": x.T @ dout}
    if has_bias:
        grads["db"] = dout.sum(axis=0)  # dout/db is 1 for every sample: sum over the batch
    return (dout @ weights.T if need_dx else None), grads


def cost(batch: int, layer: LayerShape) -> LayerCost:
    """z = a_prev @ W + b, a = f(z); backward dz, dW = a_prev.T @ dz, db, dz @ W.T upstream."""
    activations = batch * layer.n_out
    parameters = sum(prod(shape) for shape in layer.parameters)
    weights = layer.n_in * layer.n_out
    return LayerCost(
        kept=2 * activations,
        gradients=activations + parameters,
        scratch=SCRATCH * activations + parameters,  # l2's l2 * W beside them
        forward_flops=2 * batch * weights,
        flops=6 * batch * weights,
        what=f"batch {batch:,} x {layer.n_out:,} units",
    )


DENSE = Kind(
    name="dense",
    gradients={"weights": "dW", "biases": "db"},
    regularised=("weights",),
    units_out=lambda n_in, params: params["weights"].shape[1],
    forward=forward,
    backward=backward,
    cost=cost,
)
