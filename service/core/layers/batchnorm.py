"""Batch normalisation: CS231n's batchnorm_forward / batchnorm_backward_alt, and makemore's
Bessel-corrected variant.

Each feature (column of the canonical (batch, n) input) is normalised over the batch:

    mu = mean(x, axis=0);  var = sum((x - mu)^2, axis=0) / D     D = N ("biased", CS231n,
    x_hat = (x - mu) / sqrt(var + eps)                              PyTorch) or N - 1
    out = gamma * x_hat + beta                                      ("unbiased", makemore)

Backward, in the compact form (every sum over the batch axis):

    dbeta = sum(dout);  dgamma = sum(dout * x_hat)
    dx = gamma / std / N * (N * dout - dbeta - (N / D) * x_hat * dgamma)

The factor N / D is the only trace of the Bessel correction: var is 1 / D times the sum of
squares, so d var / d x_i = 2 (x_i - mu) / D, and with 1 / std = s that term of dx_i is
-s * x_hat_i * sum(g * x_hat) / D (g = dout * gamma); the mean's term is -s * mean(g)
because x_hat sums to zero.  Karpathy's backprop-ninja answer has the same n / (n - 1).

In "eval" mode the running statistics replace the batch's, are constants, and
dx = dout * gamma / sqrt(running_var + eps).  In "train" mode with running statistics sent,
the state answered is CS231n's running average, momentum * running + (1 - momentum) * batch
statistic, the batch variance being the one ``variance`` names (PyTorch's own momentum is
the weight of the batch's, and its running variance always the unbiased one: not that).

Spatial batchnorm (CS231n's spatial_batchnorm_forward / backward): on images (N, C, H, W)
each channel is one feature, normalised over N, H and W.  CS231n's solution lays the images
out as the rows of (N*H*W, C) and runs the 2-D functions; the same functions here run on the
images as they are, their sums over axes (0, 2, 3) instead of 0 (``over_features``) and the
per-feature vectors broadcast as (C, 1, 1) (``as_x``): the same numbers (a test compares
them with the rows' answer), without the four transposed copies in and out, which made the
layer 2.9x PyTorch's time (50 x 32 x 32 x 32; 1.2x this way).  The batch of the statistics is
then N*H*W (so "unbiased" divides by N*H*W - 1, as PyTorch's running variance does).

Speed: the forward keeps x_hat (one (batch, n) array, built in the centred copy of x) and
1/std (a vector); the backward allocates dx once and updates it in place; the sums of
products are einsum's, which need no (batch, n) temporary.
"""

from __future__ import annotations

import numpy as np

from ..cost import SCRATCH, LayerCost, LayerShape
from .base import Array, Kind, Params, Settings

MODES = ("train", "eval")
VARIANCES = ("biased", "unbiased")
#: what a setting is when it is not sent (the schema fills the same ones)
DEFAULTS = {"eps": 1e-5, "mode": "train", "variance": "biased", "momentum": 0.9}


def setting(settings: Settings, name: str):
    value = settings.get(name)
    return DEFAULTS[name] if value is None else value


def column_sums_of_products(a: Array, b: Array) -> Array:
    """sum(a * b, axis=0) without the (batch, n) product."""
    return np.einsum("ij,ij->j", a, b)


def feature_sums_of_products(a: Array, b: Array) -> Array:
    """sum(a * b) over everything but the features (axis 1): (batch, n) rows or (N, C, H, W)
    images, without the product."""
    return np.einsum("nchw,nchw->c", a, b) if a.ndim == 4 else column_sums_of_products(a, b)


def as_x(vector: Array, x: Array) -> Array:
    """A per-feature (n,) vector shaped to broadcast against x: (n,) for rows, (C, 1, 1) for
    images."""
    return vector.reshape(-1, 1, 1) if x.ndim == 4 else vector


def over_features(x: Array) -> tuple[int, ...]:
    """The axes a feature's statistics run over: the batch's, and on images H and W too."""
    return (0, 2, 3) if x.ndim == 4 else (0,)


def overflow_to_nan(inv_std: Array, var: Array) -> Array:
    """1/std where the variance is finite; NaN where its sum of squares overflowed.

    An infinite variance would make 1/std exactly 0 and x_hat silently 0: NaN instead
    reaches z, and the network refuses the request by name (inputs too large for float64).
    """
    if np.isfinite(var).all():
        return inv_std
    return np.where(np.isfinite(var), inv_std, np.nan)


def forward(x: Array, params: Params, settings: Settings) -> tuple[Array, tuple]:
    """Per feature of (batch, n) rows; per channel of (N, C, H, W) images (spatial)."""
    gamma, beta = params["gamma"], params["beta"]
    eps = setting(settings, "eps")
    count = x.size // x.shape[1]  # the numbers each statistic runs over: N, or N*H*W
    if setting(settings, "mode") == "eval":
        mean, var = settings["running_mean"], settings["running_var"]
        x_hat = x - as_x(mean, x)
    else:
        mean = x.mean(axis=over_features(x))
        x_hat = x - as_x(mean, x)  # the centred copy, normalised in place below
        divisor = count - 1 if setting(settings, "variance") == "unbiased" else count
        var = feature_sums_of_products(x_hat, x_hat) / divisor
    inv_std = overflow_to_nan(1.0 / np.sqrt(var + eps), var)
    x_hat *= as_x(inv_std, x)
    out = x_hat * as_x(gamma, x)
    out += as_x(beta, x)
    return out, (x_hat, gamma, inv_std, mean, var, settings)


def backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    x_hat, gamma, inv_std, _, _, settings = cache
    dbeta = dout.sum(axis=over_features(dout))
    dgamma = feature_sums_of_products(dout, x_hat)
    grads = {"dgamma": dgamma, "dbeta": dbeta}
    if not need_dx:
        return None, grads
    if setting(settings, "mode") == "eval":  # the running statistics are constants
        return dout * as_x(gamma * inv_std, dout), grads
    n = dout.size // dout.shape[1]
    divisor = n - 1 if setting(settings, "variance") == "unbiased" else n
    # dx = gamma * inv_std * (dout - dbeta / N - x_hat * dgamma / D): one array, in place
    dx = x_hat * as_x(-dgamma / divisor, dout)
    dx += dout
    dx -= as_x(dbeta / n, dout)
    dx *= as_x(gamma * inv_std, dout)
    return dx, grads


def state(cache: tuple, settings: Settings) -> dict[str, Array]:
    """Train mode with running statistics sent: them updated, as CS231n's batchnorm_forward."""
    running_mean, running_var = settings.get("running_mean"), settings.get("running_var")
    if setting(settings, "mode") != "train" or running_mean is None or running_var is None:
        return {}
    _, _, _, mean, var, _ = cache
    momentum = setting(settings, "momentum")
    return {
        "running_mean": momentum * running_mean + (1.0 - momentum) * mean,
        "running_var": momentum * running_var + (1.0 - momentum) * var,
    }


def cost(batch: int, layer: LayerShape) -> LayerCost:
    """Kept: z, a and x_hat; gradients: dz, dgamma, dbeta; a step's temporaries beside them.
    Rows and images alike (the images are normalised in place, not copied to rows).

    FLOPs per number: forward mean 1, centre 1, variance 2, scale 1, gamma and beta 2;
    backward dbeta 1, dgamma 2, dx 4 (a few per feature besides: 1/std, the running update).
    """
    activations = batch * layer.n_out
    features = layer.in_shape[0]  # n of (n,) rows, or the C of (C, H, W) images
    images = len(layer.in_shape) == 3
    vectors = 8 * features  # gamma, beta, the running statistics, mean, var, 1/std, updates
    what = f"batch {batch:,} x {features:,} features"
    if images:
        _, height, width = layer.in_shape
        what = f"batch {batch:,} x {features:,} channel(s) x {height:,} x {width:,}"
    return LayerCost(
        kept=3 * activations + vectors,
        gradients=activations + 2 * features,
        scratch=SCRATCH * activations + vectors,
        forward_flops=7 * activations + 10 * features,
        flops=14 * activations + 20 * features,
        what=what,
    )


BATCHNORM = Kind(
    name="batchnorm",
    gradients={"gamma": "dgamma", "beta": "dbeta"},
    regularised=(),
    units_out=lambda n_in, params: n_in,
    forward=forward,
    backward=backward,
    cost=cost,
    state=state,
    sample_out=lambda shape, params, settings: shape,  # (n,) rows or (C, H, W) images
)
