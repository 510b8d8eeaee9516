"""Layer normalisation: CS231n's layernorm_forward / layernorm_backward.

Each sample (row of the canonical (batch, D) input) is normalised over its own features,
with the biased variance (CS231n, PyTorch's layer_norm); gamma and beta are per feature:

    mu = mean(x, axis=1);  var = mean((x - mu)^2, axis=1)
    x_hat = (x - mu) / sqrt(var + eps);  out = gamma * x_hat + beta

It is batchnorm on the transposed input, so the backward is batchnorm's compact form with
the axes swapped, g = dout * gamma taking the place of dout:

    dbeta = sum(dout, axis=0);  dgamma = sum(dout * x_hat, axis=0)
    dx = (1/std) / D * (D * g - sum(g, axis=1) - x_hat * sum(g * x_hat, axis=1))

Nothing depends on the batch: no mode, no running statistics, a batch of one is fine.
The forward keeps x_hat (built in the centred copy of x) and the per-sample 1/std; the
backward builds g once and turns it into dx in place.
"""

from __future__ import annotations

import numpy as np

from ..cost import SCRATCH, LayerCost, LayerShape
from .base import Array, Kind, Params, Settings
from .batchnorm import overflow_to_nan

DEFAULT_EPS = 1e-5


def normalise_rows(x: Array, eps: float) -> tuple[Array, Array]:
    """Each row of (rows, D) over its own D numbers, biased variance: (x_hat, 1/std (rows, 1)).

    Layernorm's rows are samples; groupnorm's (service.core.layers.groupnorm) are one
    sample's group of channels.
    """
    x_hat = x - x.mean(axis=1, keepdims=True)  # the centred copy, normalised in place below
    var = np.einsum("ij,ij->i", x_hat, x_hat) / x.shape[1]
    inv_std = overflow_to_nan(1.0 / np.sqrt(var + eps), var)[:, None]
    x_hat *= inv_std
    return x_hat, inv_std


def rows_dx(g: Array, x_hat: Array, inv_std: Array) -> Array:
    """dx of ``normalise_rows`` from g = dL/dx_hat, (rows, D), turned into dx in place:
    (1/std) * (g - mean(g) - x_hat * mean(g * x_hat)), means over each row."""
    g_mean = g.mean(axis=1, keepdims=True)
    g_x_hat = (np.einsum("ij,ij->i", g, x_hat) / g.shape[1])[:, None]
    g -= g_mean
    g -= x_hat * g_x_hat
    g *= inv_std
    return g


def forward(x: Array, params: Params, settings: Settings) -> tuple[Array, tuple]:
    gamma, beta = params["gamma"], params["beta"]
    eps = settings.get("eps")
    x_hat, inv_std = normalise_rows(x, DEFAULT_EPS if eps is None else eps)
    out = x_hat * gamma
    out += beta
    return out, (x_hat, gamma, inv_std)


def backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    x_hat, gamma, inv_std = cache
    grads = {"dgamma": np.einsum("ij,ij->j", dout, x_hat), "dbeta": dout.sum(axis=0)}
    if not need_dx:
        return None, grads
    return rows_dx(dout * gamma, x_hat, inv_std), grads


def cost(batch: int, layer: LayerShape) -> LayerCost:
    """Kept: z, a and x_hat; gradients: dz, dgamma, dbeta; a step's temporaries beside them.

    FLOPs per number: forward mean 1, centre 1, variance 2, scale 1, gamma and beta 2;
    backward dbeta 1, dgamma 2, g 1, its sums 3, dx 4.
    """
    activations = batch * layer.n_out
    return LayerCost(
        kept=3 * activations + 2 * batch + 2 * layer.n_out,
        gradients=activations + 2 * layer.n_out,
        scratch=SCRATCH * activations + 3 * batch,
        forward_flops=7 * activations,
        flops=18 * activations,
        what=f"batch {batch:,} x {layer.n_out:,} features",
    )


LAYERNORM = Kind(
    name="layernorm",
    gradients={"gamma": "dgamma", "beta": "dbeta"},
    regularised=(),
    units_out=lambda n_in, params: n_in,
    forward=forward,
    backward=backward,
    cost=cost,
)
