"""Where a student's convolution and pooling backward typically fail (issue 15).

Each mistake is the layer as a student wrote it (CS231n's conv_backward_naive and
max_pool_backward_naive, Andrew Ng's conv_backward and pool_backward), recomputed by
service.core.mistakes in each layer of its kind alone, then in all of them:

    kernel_flipped              a true convolution (the kernel rotated 180 degrees) where the
                                layer is a cross-correlation, in one of three forms:
                                "forward": the forward pass flips it (scipy.signal.convolve2d),
                                    the backward is the course's loop with W as sent;
                                "layer": W flipped once, before the forward pass caches it, so
                                    the backward's dx uses the flipped kernel too (dW is still
                                    the windows times dz: the gradient of the flipped kernel);
                                "backward": the forward is right, dx is the textbook "full
                                    convolution with the rotated kernel" done with convolve2d,
                                    which flips it back: dx with the flipped kernel, dW right.
    stride_ignored_in_backward  the backward's windows start at (h, w), not (h * stride,
                                w * stride) (Ng's ``vert_start = h``): conv2d's dW and dx,
                                a pool's dx; the forward is right.  Only with a stride > 1.
    maxpool_gradient_to_all     the max-pool gradient sent to every position of the window
                                (the mask forgotten).  Only with windows of more than one
                                position; not the documented ``"ties": "all"``, which sends
                                it to the tied maxima only.
    avgpool_not_divided         the average-pool gradient spread without / (ph * pw).

No one line of NumPy fixes a loop over windows, so the messages say the fix in words
(no backticks).  A conv dx that still has its padding changes the shape: it is
service.grading.shapes_conv's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..layers.base import Array, Kind
from ..layers.pool2d import scatter
from ..problem import Layer, Problem
from . import KindMistake

# -- the students' kinds ------------------------------------------------------------------------


def flipped(weights: Array) -> Array:
    """(F, C, HH, WW) filters rotated 180 degrees: what a true convolution multiplies by."""
    return weights[:, :, ::-1, ::-1]


def _flipped_params(params):
    return {**params, "weights": flipped(params["weights"])}


def flip_in_forward(right: Kind, layer: Layer) -> Kind:
    """z with the flipped kernel; the cache keeps W as sent, so the backward is the course's."""

    def forward(x, params, settings):
        z, (x_, _, has_bias, stride, pad) = right.forward(x, _flipped_params(params), settings)
        return z, (x_, params["weights"], has_bias, stride, pad)

    return replace(right, forward=forward)


def flip_whole_layer(right: Kind, layer: Layer) -> Kind:
    """W flipped before forward caches it: the backward's dx multiplies by it too."""
    return replace(right, forward=lambda x, p, s: right.forward(x, _flipped_params(p), s))


def flip_in_backward(right: Kind, layer: Layer) -> Kind:
    """dx with the flipped kernel; dW and db do not read the kernel, so they stay right."""

    def backward(dout, cache, need_dx=True):
        x, weights, has_bias, stride, pad = cache
        return right.backward(dout, (x, flipped(weights), has_bias, stride, pad), need_dx)

    return replace(right, backward=backward)


def conv_stride_one(right: Kind, layer: Layer) -> Kind:
    """The backward's windows every row and column: dW's windows of x and dx's scatter both
    (Ng's a_slice and da_prev_pad share vert_start).  Shapes stay: the windows at stride 1
    start no later than the right ones."""

    def backward(dout, cache, need_dx=True):
        x, weights, has_bias, _, pad = cache
        return right.backward(dout, (x, weights, has_bias, (1, 1), pad), need_dx)

    return replace(right, backward=backward)


def _scatter_at_stride_one(shares, x_shape: tuple, pool: tuple, out: tuple) -> Array:
    """dx from each window offset's share of dout, the window at (h, w) starting at (h, w)."""
    ph, pw = pool
    ho, wo = out
    dx = np.zeros(x_shape)
    for k in range(ph * pw):
        di, dj = divmod(k, pw)
        dx[:, :, di : di + ho, dj : dj + wo] += shares(k)
    return dx


def avgpool_stride_one(right: Kind, layer: Layer) -> Kind:
    def backward(dout, cache, need_dx=True):
        x_shape, settings = cache
        if not need_dx:
            return None, {}
        ph, pw = settings["pool"]
        share = dout / (ph * pw)
        return _scatter_at_stride_one(lambda k: share, x_shape, (ph, pw), dout.shape[2:]), {}

    return replace(right, backward=backward)


def maxpool_stride_one(right: Kind, layer: Layer) -> Kind:
    """The max of the window at (h, w) gets dout[h, w]: the student's mask is taken from the
    wrong window too, from x (the right forward's cache keeps it)."""

    def backward(dout, cache, need_dx=True):
        x_shape, settings, _, x = cache
        if not need_dx:
            return None, {}
        (ph, pw), (ho, wo) = settings["pool"], dout.shape[2:]
        n, c = x_shape[:2]
        flat = sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, :ho, :wo].reshape(
            n, c, ho, wo, ph * pw
        )
        if settings.get("ties", "first") == "all":
            mask = flat == flat.max(axis=-1, keepdims=True)
            shares = lambda k: dout * mask[..., k]  # noqa: E731
        else:
            first = flat.argmax(axis=-1)
            shares = lambda k: dout * (first == k)  # noqa: E731
        return _scatter_at_stride_one(shares, x_shape, (ph, pw), (ho, wo)), {}

    return replace(right, backward=backward)


def _spread(right: Kind, layer: Layer) -> Kind:
    """dout to every position of its window, undivided: the max's mask forgotten, or the
    average's 1 / (ph * pw)."""

    def backward(dout, cache, need_dx=True):
        x_shape, settings = cache[:2]
        if not need_dx:
            return None, {}
        return scatter(lambda k: dout, x_shape, settings), {}

    return replace(right, backward=backward)


# -- when a mistake changes anything ------------------------------------------------------------


def _kernel_larger_than_one(layer: Layer) -> bool:
    return max(layer.params["weights"].shape[2:]) > 1


def _strided(layer: Layer) -> bool:
    return tuple(layer.settings["stride"]) != (1, 1)


def _window_larger_than_one(layer: Layer) -> bool:
    ph, pw = layer.settings["pool"]
    return ph * pw > 1


# -- the words ------------------------------------------------------------------------------------


def _pair(values, what: str) -> str:
    a, b = values
    return f"{what} {a}" if a == b else f"{what} [{a}, {b}] (height, width)"


def explain_flip(problem: Problem, k: int, formulas) -> tuple[str, None]:
    return (
        "the kernel was flipped (rotated 180 degrees): a true convolution where the layer is a "
        "cross-correlation, as in CS231n, Andrew Ng's course and PyTorch: z[n, f, i, j] = "
        "sum(window * W[f]) + b[f], each window of the padded input times the filter as it "
        "is. Either the forward pass flipped it (scipy.signal.convolve2d, W[:, :, ::-1, ::-1] "
        "or np.rot90(W, 2)), so z and everything after it differ, or dx did (the textbook "
        "'full convolution of dout with the rotated kernel' done with convolve2d, which flips "
        "it once more). Use the filters as sent, unflipped, in the forward pass and in dx's "
        "loop (dx_window += W[f] * dout[n, f, i, j]).",
        None,
    )


def explain_stride(problem: Problem, k: int, formulas) -> tuple[str, None]:
    layer = problem.layers[k]
    sh, sw = layer.settings["stride"]
    stride = _pair((sh, sw), "stride")
    what = {
        "conv2d": "both dW's window of the padded input and the part of dx it updates",
        "maxpool2d": "the window whose maximum receives the gradient",
        "avgpool2d": "the window that receives the gradient's share",
    }[layer.kind]
    return (
        f"the backward pass ignored the layer's {stride}: its window for output position (h, w) "
        f"started at row h and column w (vert_start = h), but the forward pass's windows start "
        f"every {sh} row(s) and {sw} column(s). Start {what} at row h * {sh} and column w * {sw} "
        "(vert_start = h * stride, horiz_start = w * stride), as in the forward pass.",
        None,
    )


def explain_to_all(problem: Problem, k: int, formulas) -> tuple[str, None]:
    layer = problem.layers[k]
    ph, pw = layer.settings["pool"]
    if layer.settings.get("ties", "first") == "all":
        mask = (
            'the positions equal to the maximum ("ties": "all", Andrew Ng\'s mask: window == '
            "np.max(window))"
        )
    else:
        mask = "the position of the maximum (the first in row-major order where several tie)"
    return (
        f"the max-pooling gradient was sent to every position of each {ph} x {pw} "
        "window, but only the window's maximum reached the output, so only it gets the "
        "gradient and the others get 0. Multiply each window's gradient by its mask, "
        f"{mask}.",
        None,
    )


def explain_not_divided(problem: Problem, k: int, formulas) -> tuple[str, None]:
    ph, pw = problem.layers[k].settings["pool"]
    size = ph * pw
    return (
        f"the average-pooling gradient was not divided by the window size: each output "
        f"is the mean of {ph} x {pw} = {size} inputs, so each input gets 1/{size} of the "
        f"output's gradient (Andrew Ng's distribute_value: dz / (n_H * n_W)). Divide each "
        f"window's share by {size}.",
        None,
    )


#: the grader's order: the flips (the forward's first, the commonest), the ignored stride,
#: then the pools' own
CONV_MISTAKES = (
    KindMistake(
        "kernel_flipped",
        "conv2d",
        flip_in_forward,
        explain_flip,
        applies=_kernel_larger_than_one,
        changes_forward=True,
    ),
    KindMistake(
        "kernel_flipped",
        "conv2d",
        flip_whole_layer,
        explain_flip,
        applies=_kernel_larger_than_one,
        changes_forward=True,
    ),
    KindMistake(
        "kernel_flipped", "conv2d", flip_in_backward, explain_flip, applies=_kernel_larger_than_one
    ),
    KindMistake(
        "stride_ignored_in_backward", "conv2d", conv_stride_one, explain_stride, applies=_strided
    ),
    KindMistake(
        "stride_ignored_in_backward",
        "maxpool2d",
        maxpool_stride_one,
        explain_stride,
        applies=_strided,
    ),
    KindMistake(
        "stride_ignored_in_backward",
        "avgpool2d",
        avgpool_stride_one,
        explain_stride,
        applies=_strided,
    ),
    KindMistake(
        "maxpool_gradient_to_all",
        "maxpool2d",
        _spread,
        explain_to_all,
        applies=_window_larger_than_one,
    ),
    KindMistake(
        "avgpool_not_divided",
        "avgpool2d",
        _spread,
        explain_not_divided,
        applies=_window_larger_than_one,
    ),
)
