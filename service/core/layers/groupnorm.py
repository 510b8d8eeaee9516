"""Group normalisation: CS231n's spatial_groupnorm_forward / spatial_groupnorm_backward,
PyTorch's F.group_norm.

Each sample's C channels are split into G contiguous groups of C/G channels; each group
(C/G x H x W numbers) is normalised over its own numbers, with the biased variance; gamma
and beta are per channel:

    rows = x.reshape(N*G, C/G*H*W)                 (one row a sample's group)
    x_hat = (rows - mean(rows, 1)) / sqrt(var(rows, 1) + eps), back to (N, C, H, W)
    out = gamma[c] * x_hat + beta[c]

Each row is layernorm's row, so the normalisation and its backward are layernorm's
(``normalise_rows``, ``rows_dx``), with g = dout * gamma[c] as dL/dx_hat:

    dbeta = sum(dout, axis=(0, 2, 3));  dgamma = sum(dout * x_hat, axis=(0, 2, 3))
    dx = rows_dx(g as rows, x_hat as rows, 1/std)

eps defaults to 1e-5, as both CS231n's gn_param.get("eps", 1e-5) and torch's group_norm.
Nothing depends on the batch: no mode, no running statistics.  With G = 1 it is layernorm
over each whole image; with G = C, instance norm.
"""

from __future__ import annotations

import numpy as np

from ..cost import SCRATCH, LayerCost, LayerShape
from .base import Array, Kind, Params, Settings
from .layernorm import normalise_rows, rows_dx

DEFAULT_EPS = 1e-5


def per_channel(vector: Array) -> Array:
    """A (C,) vector as (C, 1, 1), to broadcast against (N, C, H, W)."""
    return vector[:, None, None]


def forward(x: Array, params: Params, settings: Settings) -> tuple[Array, tuple]:
    gamma, beta = params["gamma"], params["beta"]
    eps = settings.get("eps")
    groups = settings["groups"]
    rows = x.reshape(x.shape[0] * groups, -1)
    x_hat, inv_std = normalise_rows(rows, DEFAULT_EPS if eps is None else eps)
    x_hat = x_hat.reshape(x.shape)
    out = x_hat * per_channel(gamma)
    out += per_channel(beta)
    return out, (x_hat, gamma, inv_std, groups)


def backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    x_hat, gamma, inv_std, groups = cache
    grads = {
        "dgamma": np.einsum("nchw,nchw->c", dout, x_hat),
        "dbeta": dout.sum(axis=(0, 2, 3)),
    }
    if not need_dx:
        return None, grads
    rows = dout.shape[0] * groups
    g = np.multiply(dout, per_channel(gamma), order="C")  # dL/dx_hat, turned into dx in place
    dx = rows_dx(g.reshape(rows, -1), x_hat.reshape(rows, -1), inv_std)
    return dx.reshape(dout.shape), grads


def cost(batch: int, layer: LayerShape) -> LayerCost:
    """Kept: z, a and x_hat; gradients: dz, dgamma, dbeta; a step's temporaries beside them.

    FLOPs per number: forward mean 1, centre 1, variance 2, scale 1, gamma and beta 2;
    backward dbeta 1, dgamma 2, g 1, its sums 3, dx 4.
    """
    activations = batch * layer.n_out
    channels, height, width = layer.in_shape
    groups = batch * int(layer.setting("groups", 1))  # type: ignore[call-overload]
    return LayerCost(
        kept=3 * activations + 2 * groups + 2 * channels,
        gradients=activations + 2 * channels,
        scratch=SCRATCH * activations + 3 * groups,
        forward_flops=7 * activations,
        flops=18 * activations,
        what=f"batch {batch:,} x {channels:,} channel(s) x {height:,} x {width:,}",
    )


GROUPNORM = Kind(
    name="groupnorm",
    gradients={"gamma": "dgamma", "beta": "dbeta"},
    regularised=(),
    units_out=lambda n_in, params: n_in,
    forward=forward,
    backward=backward,
    cost=cost,
    sample_out=lambda shape, params, settings: shape,
)
