"""Max and average pooling: CS231n's max_pool_forward / backward, Ng's pool_forward / backward.

Canonical NCHW.  Windows of (ph, pw) every (sh, sw); a window that does not fit
is dropped (Ho = (H - ph) // sh + 1), as PyTorch (ceil_mode=False) and Ng's
int(1 + (n_H - f) / stride) do.

    max:  out = the window's maximum; its gradient goes to the window's first maximum in
          row-major order (PyTorch, CS231n's usual solution), or with ties "all" to every
          tied position (Ng's mask = (x == np.max(x)))
    avg:  out = the window's mean; dx gets dout / (ph * pw) at every position of the window

Backward adds one strided grid per window offset (ph * pw adds), so overlapping windows
(stride < pool) accumulate as they should.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..cost import SCRATCH, LayerCost, LayerShape
from .base import Array, Kind, Params, Settings, Shape

TIES = ("first", "all")


def pooled_size(size: int, pool: int, stride: int) -> int:
    return (size - pool) // stride + 1


def sample_out(shape: Shape, params: Params, settings: Settings) -> Shape:
    channels, height, width = shape
    (ph, pw), (sh, sw) = settings["pool"], settings["stride"]
    return (channels, pooled_size(height, ph, sh), pooled_size(width, pw, sw))


def windows(x: Array, settings: Settings) -> Array:
    """(N, C, Ho, Wo, ph*pw): each window's numbers in row-major order (one copy)."""
    (ph, pw), (sh, sw) = settings["pool"], settings["stride"]
    n, c, height, width = x.shape
    ho, wo = pooled_size(height, ph, sh), pooled_size(width, pw, sw)
    view = sliding_window_view(x, (ph, pw), axis=(2, 3))[
        :, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw
    ]
    return view.reshape(n, c, ho, wo, ph * pw)


def scatter(shares, x_shape: tuple, settings: Settings) -> Array:
    """dx from each window offset's share of dout: shares(k) is (N, C, Ho, Wo) for offset k."""
    (ph, pw), (sh, sw) = settings["pool"], settings["stride"]
    dx = np.zeros(x_shape)
    ho, wo = pooled_size(x_shape[2], ph, sh), pooled_size(x_shape[3], pw, sw)
    for k in range(ph * pw):
        di, dj = divmod(k, pw)
        dx[:, :, di : di + (ho - 1) * sh + 1 : sh, dj : dj + (wo - 1) * sw + 1 : sw] += shares(k)
    return dx


def max_forward(x: Array, params: Params, settings: Settings) -> tuple[Array, tuple]:
    """The cache keeps x, the layer below's output (held anyway: no array is added), for the
    autograder's student who takes the max from other windows (service.core.kind_mistakes)."""
    flat = windows(x, settings)
    if settings.get("ties", "first") == "all":
        out = flat.max(axis=-1)
        return out, (x.shape, settings, flat == out[..., None], x)
    first = flat.argmax(axis=-1)  # the first maximum in row-major order
    out = np.take_along_axis(flat, first[..., None], axis=-1)[..., 0]
    return out, (x.shape, settings, first, x)


def max_backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    x_shape, settings, where, _ = cache
    if not need_dx:
        return None, {}
    if where.dtype == bool:  # ties "all": every tied position gets the whole gradient
        return scatter(lambda k: dout * where[..., k], x_shape, settings), {}
    return scatter(lambda k: dout * (where == k), x_shape, settings), {}


def avg_forward(x: Array, params: Params, settings: Settings) -> tuple[Array, tuple]:
    return windows(x, settings).mean(axis=-1), (x.shape, settings)


def avg_backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    x_shape, settings = cache
    if not need_dx:
        return None, {}
    ph, pw = settings["pool"]
    share = dout / (ph * pw)
    return scatter(lambda k: share, x_shape, settings), {}


def cost(batch: int, layer: LayerShape) -> LayerCost:
    """The windows' copy (N*Ho*Wo x ph*pw numbers) and the argmax or tie mask kept, beside
    z, a, dz; backward builds dx (the input's size) from ph*pw strided adds."""
    ph, pw = layer.setting("pool", (1, 1))  # type: ignore[misc]
    activations = batch * layer.n_out
    window = ph * pw * activations
    return LayerCost(
        kept=3 * activations + window,
        gradients=activations,
        scratch=SCRATCH * activations + window + 2 * batch * layer.n_in,
        forward_flops=window + activations,
        flops=3 * window + batch * layer.n_in,
        what=(
            f"batch {batch:,} x {' x '.join(f'{n:,}' for n in layer.out_shape)}, "
            f"windows of {ph} x {pw}"
        ),
    )


def _kind(name: str, forward, backward) -> Kind:
    return Kind(
        name=name,
        gradients={},
        regularised=(),
        units_out=lambda n_in, params: n_in,  # not flat: sample_out says its shape
        forward=forward,
        backward=backward,
        cost=cost,
        sample_out=sample_out,
    )


MAXPOOL2D = _kind("maxpool2d", max_forward, max_backward)
AVGPOOL2D = _kind("avgpool2d", avg_forward, avg_backward)
