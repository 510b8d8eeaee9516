"""Flatten: images (N, C, H, W) to rows (N, C*H*W), in the order the client's layout implies.

CS231n flattens NCHW (``x.reshape(N, -1)``); Andrew Ng flattens NHWC (his course-1
``train_x_orig.reshape(m, -1)`` of (m, H, W, C) images).  The order decides which
row of the next dense layer's weights meets which pixel, so it follows the
request's layout (``channels_last``): the weights then line up with the course's.

    forward:  x.reshape(N, -1), or x.transpose(0, 2, 3, 1).reshape(N, -1) channels last
    backward: the inverse reshape (and transpose) of dout
"""

from __future__ import annotations

from math import prod

from ..cost import LayerCost, LayerShape
from .base import Array, Kind, Params, Settings


def forward(x: Array, params: Params, settings: Settings) -> tuple[Array, tuple]:
    n = x.shape[0]
    if settings.get("channels_last"):
        return x.transpose(0, 2, 3, 1).reshape(n, -1), (x.shape, True)
    return x.reshape(n, -1).copy(), (x.shape, False)


def backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    (n, c, h, w), channels_last = cache
    if not need_dx:
        return None, {}
    if channels_last:
        return dout.reshape(n, h, w, c).transpose(0, 3, 1, 2).copy(), {}
    return dout.reshape(n, c, h, w).copy(), {}


def cost(batch: int, layer: LayerShape) -> LayerCost:
    activations = batch * layer.n_out
    return LayerCost(
        kept=2 * activations,
        gradients=activations,
        scratch=3 * activations,
        forward_flops=activations,
        flops=2 * activations,
        what=f"batch {batch:,} x {layer.n_out:,} units",
    )


FLATTEN = Kind(
    name="flatten",
    gradients={},
    regularised=(),
    units_out=lambda n_in, params: n_in,
    forward=forward,
    backward=backward,
    cost=cost,
    sample_out=lambda shape, params, settings: (prod(shape),),
)
