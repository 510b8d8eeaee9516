"""The 2-D convolution: CS231n's conv_forward / conv_backward, Ng's conv_forward / conv_backward.

Canonical NCHW, a cross-correlation (no kernel flip), as both courses and PyTorch:

    x (N, C, H, W), w (F, C, HH, WW), b (F,) or none, stride (sh, sw), pad (ph, pw)
    out[n, f, i, j] = sum_{c, di, dj} xp[n, c, i*sh + di, j*sw + dj] * w[f, c, di, dj] + b[f]
    Ho = (H + 2 ph - HH) / sh + 1 (whole: the schemas refuse a size that is not)

By im2col: the padded input's windows are unfolded into one (N*Ho*Wo, C*HH*WW)
matrix (``unfold``), so forward is one GEMM and backward two:

    dW = dout_rows.T @ cols     db = dout.sum(axis=(0, 2, 3))     dcols = dout_rows @ w_rows

and dx folds dcols back, one kernel offset at a time (HH*WW strided adds), then
drops the padding.  The unfolded buffer is the layer's largest array, so only
one is alive at a time: forward frees its own, backward unfolds the input again
for dW (a copy, cheap beside the GEMMs) and builds dcols one kernel row at a
time.  The cost model prices it (``cost``) before anything runs, so a request
that would need too large a one is refused before it is allocated.
"""

from __future__ import annotations

from math import prod

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..cost import SCRATCH, LayerCost, LayerShape
from .base import Array, Kind, Params, Settings, Shape

Pair = tuple[int, int]


def output_size(size: int, kernel: int, stride: int, pad: int) -> tuple[int, int]:
    """(whole part, remainder) of (size + 2 pad - kernel) / stride + 1."""
    span = size + 2 * pad - kernel
    return span // stride + 1, span % stride


def sample_out(shape: Shape, params: Params, settings: Settings) -> Shape:
    _, height, width = shape
    filters, _, hh, ww = params["weights"].shape
    (sh, sw), (ph, pw) = settings["stride"], settings["pad"]
    return (filters, output_size(height, hh, sh, ph)[0], output_size(width, ww, sw, pw)[0])


def unfold(xp: Array, kernel: Pair, stride: Pair, out: Pair) -> Array:
    """The padded input's windows as rows: (N*Ho*Wo, C*HH*WW), one contiguous copy."""
    n, c = xp.shape[:2]
    (hh, ww), (sh, sw), (ho, wo) = kernel, stride, out
    windows = sliding_window_view(xp, (hh, ww), axis=(2, 3))[
        :, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw
    ]  # a view (N, C, Ho, Wo, HH, WW): nothing is copied yet
    return np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(
        n * ho * wo, c * hh * ww
    )


def padded(x: Array, pad: Pair) -> Array:
    ph, pw = pad
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x


def forward(x: Array, params: Params, settings: Settings) -> tuple[Array, tuple]:
    weights, biases = params["weights"], params.get("biases")
    filters, _, hh, ww = weights.shape
    stride, pad = settings["stride"], settings["pad"]
    n, _, height, width = x.shape
    out = (
        output_size(height, hh, stride[0], pad[0])[0],
        output_size(width, ww, stride[1], pad[1])[0],
    )
    cols = unfold(padded(x, pad), (hh, ww), stride, out)
    rows = cols @ weights.reshape(filters, -1).T  # (N*Ho*Wo, F)
    del cols  # freed before backward unfolds again: one unfolded buffer alive at a time
    if biases is not None:
        rows += biases
    z = np.ascontiguousarray(rows.reshape(n, *out, filters).transpose(0, 3, 1, 2))
    # x is the layer below's output, kept anyway: the cache adds no array
    return z, (x, weights, biases is not None, stride, pad)


def backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    """dW from the input unfolded again (not kept from forward); dx one kernel row at a time,
    so that its buffer is 1/HH of an unfolded one (``dcols`` whole would be a second)."""
    x, weights, has_bias, (sh, sw), (ph, pw) = cache
    filters, channels, hh, ww = weights.shape
    n, _, ho, wo = dout.shape
    xp = padded(x, (ph, pw))
    dout_rows = dout.transpose(0, 2, 3, 1).reshape(-1, filters)  # (N*Ho*Wo, F)
    cols = unfold(xp, (hh, ww), (sh, sw), (ho, wo))
    grads = {"dW": (dout_rows.T @ cols).reshape(weights.shape)}
    del cols
    if has_bias:
        grads["db"] = dout.sum(axis=(0, 2, 3))  # b[f] is added at every sample and position
    if not need_dx:
        return None, grads
    dxp = np.zeros(xp.shape)
    for di in range(hh):  # the kernel's row di touches a strided grid of the padded input
        row = (dout_rows @ weights[:, :, di, :].reshape(filters, -1)).reshape(
            n, ho, wo, channels, ww
        )
        for dj in range(ww):
            dxp[:, :, di : di + (ho - 1) * sh + 1 : sh, dj : dj + (wo - 1) * sw + 1 : sw] += row[
                ..., dj
            ].transpose(0, 3, 1, 2)
    height, width = x.shape[2:]
    return np.ascontiguousarray(dxp[:, :, ph : ph + height, pw : pw + width]), grads


def cost(batch: int, layer: LayerShape) -> LayerCost:
    """z and a kept (the input is the layer below's); the largest step is one of: the
    activation's, forward's (the unfolded input and its GEMM's rows), or backward's (the
    input unfolded again, dout's rows, a kernel row's share of dx, the padded dx, dx)."""
    (channels, height, width), (filters, ho, wo) = layer.in_shape, layer.out_shape
    hh, ww = layer.parameters[0][2:]
    ph, pw = layer.setting("pad", (0, 0))  # type: ignore[misc]
    activations = batch * layer.n_out
    unfolded = batch * ho * wo * channels * hh * ww
    pad = batch * channels * (height + 2 * ph) * (width + 2 * pw)
    parameters = sum(prod(shape) for shape in layer.parameters)
    gemm = 2 * batch * ho * wo * filters * channels * hh * ww
    backward_step = unfolded + unfolded // hh + 2 * pad + batch * layer.n_in + 2 * activations
    return LayerCost(
        kept=2 * activations,
        gradients=activations + parameters,
        scratch=max(SCRATCH * activations, backward_step) + parameters,
        forward_flops=gemm + unfolded,
        flops=3 * gemm + 2 * unfolded + pad,
        what=(
            f"batch {batch:,} x {filters:,} x {ho:,} x {wo:,}, its input unfolded to "
            f"{batch * ho * wo:,} x {channels * hh * ww:,}"
        ),
    )


CONV2D = Kind(
    name="conv2d",
    gradients={"weights": "dW", "biases": "db"},
    regularised=("weights",),
    units_out=lambda n_in, params: n_in,  # not flat: sample_out says its shape
    forward=forward,
    backward=backward,
    cost=cost,
    sample_out=sample_out,
)
