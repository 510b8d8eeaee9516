"""The naive loops CS231n's assignment 2 has students write first (layers.py), as the
benchmark's slow baseline: conv_forward_naive / conv_backward_naive and
max_pool_forward_naive / max_pool_backward_naive with a loop per image, filter (or
channel) and output position; affine, relu and softmax_loss vectorised as usual (a
negligible share of the time).
"""

from __future__ import annotations

import numpy as np

from .convnet import PAD, POOL


def conv_forward_naive(x, w, b, stride, pad):
    n, _, h, wd = x.shape
    f, _, hh, ww = w.shape
    ho, wo = 1 + (h + 2 * pad - hh) // stride, 1 + (wd + 2 * pad - ww) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, f, ho, wo))
    for i in range(n):
        for k in range(f):
            for r in range(ho):
                for c in range(wo):
                    window = xp[i, :, r * stride : r * stride + hh, c * stride : c * stride + ww]
                    out[i, k, r, c] = np.sum(window * w[k]) + b[k]
    return out, (x, w, b, stride, pad)


def conv_backward_naive(dout, cache):
    x, w, _, stride, pad = cache
    n, f, ho, wo = dout.shape
    _, _, hh, ww = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for i in range(n):
        for k in range(f):
            for r in range(ho):
                for c in range(wo):
                    rows = slice(r * stride, r * stride + hh)
                    cols = slice(c * stride, c * stride + ww)
                    dw[k] += xp[i, :, rows, cols] * dout[i, k, r, c]
                    dxp[i, :, rows, cols] += w[k] * dout[i, k, r, c]
    dx = dxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dw, db


def max_pool_forward_naive(x, size, stride):
    n, ch, h, w = x.shape
    ho, wo = 1 + (h - size) // stride, 1 + (w - size) // stride
    out = np.zeros((n, ch, ho, wo))
    for i in range(n):
        for k in range(ch):
            for r in range(ho):
                for c in range(wo):
                    window = x[i, k, r * stride : r * stride + size, c * stride : c * stride + size]
                    out[i, k, r, c] = np.max(window)
    return out, (x, size, stride)


def max_pool_backward_naive(dout, cache):
    x, size, stride = cache
    n, ch, ho, wo = dout.shape
    dx = np.zeros_like(x)
    for i in range(n):
        for k in range(ch):
            for r in range(ho):
                for c in range(wo):
                    window = x[i, k, r * stride : r * stride + size, c * stride : c * stride + size]
                    # the first maximum in row-major order, as F.max_pool2d and the service
                    pr, pc = np.unravel_index(np.argmax(window), window.shape)
                    dx[i, k, r * stride + pr, c * stride + pc] += dout[i, k, r, c]
    return dx


def naive(a: dict[str, np.ndarray]) -> dict[str, object]:
    """ThreeLayerConvNet.loss with the naive layers: the loss and every dW, db (no reg)."""
    x, y = a["x"], a["y"]
    n = x.shape[0]
    conv, conv_cache = conv_forward_naive(x, a["W1"], a["b1"], 1, PAD)
    relu = np.maximum(conv, 0.0)
    pooled, pool_cache = max_pool_forward_naive(relu, POOL, POOL)
    flat = pooled.reshape(n, -1)
    z2 = flat @ a["W2"] + a["b2"]
    h2 = np.maximum(z2, 0.0)
    scores = h2 @ a["W3"] + a["b3"]
    # softmax_loss
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = -log_p[rows, y].mean()
    dscores = np.exp(log_p)
    dscores[rows, y] -= 1.0
    dscores /= n
    # affine_backward, relu_backward, affine_backward
    dW3, db3 = h2.T @ dscores, dscores.sum(axis=0)
    dz2 = (dscores @ a["W3"].T) * (z2 > 0)
    dW2, db2 = flat.T @ dz2, dz2.sum(axis=0)
    dpooled = (dz2 @ a["W2"].T).reshape(pooled.shape)
    drelu = max_pool_backward_naive(dpooled, pool_cache)
    _, dW1, db1 = conv_backward_naive(drelu * (conv > 0), conv_cache)
    return {
        "loss": loss,
        "0.dW": dW1,
        "0.db": db1,
        "3.dW": dW2,
        "3.db": db2,
        "4.dW": dW3,
        "4.db": db3,
    }
