"""Inverted dropout: CS231n's dropout_forward / dropout_backward (train mode), Ng's D masks.

    out = x * mask / keep_prob          dx = dout * mask / keep_prob

No parameters, so no gradients of its own.  The mask is 0/1, shaped like x: (batch, n),
or (N, C, H, W) images (elementwise, as CS231n's dropout on conv activations).
It is either sent, or drawn from a seed exactly as the client would draw it:
``np.random.default_rng(seed).random(shape) < keep_prob`` with ``shape`` the
layer's input in the client's data layout ((n, batch) in the columns
convention, hence ``columns``; (N, H, W, C) for NHWC images, hence
``channels_last``), so that a client holding the same seed gets the same mask.
The drawn mask is answered (``state``); a sent one is not echoed.

The draw happens in forward, after the request has been priced: a small body
with a seed can ask for a huge mask (service.core.cost prices the draw from
``state_shapes``).  ``mask / keep_prob`` is computed once and kept in a
``MaskCache`` made for the request, so the gradient check's nudged forward
passes and the autograder's passes neither redraw nor rescale it: backward is
one multiply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cost import SCRATCH, LayerCost, LayerShape
from .base import Array, Kind, Params, Settings

if TYPE_CHECKING:
    from ..problem import Layer

#: numbers of (batch, n) the draw holds at once: float64 randoms, then their bool comparison
DRAW = 1.125


class MaskCache:
    """One request's mask, drawn (or scaled) on first use and kept for its later passes.

    It holds what the request's own values determine, nothing else: the same
    seed gives the same mask every time, so keeping it changes no answer.  A
    new one is made for every request (schemas.layers.dropout), never shared.
    """

    __slots__ = ("mask", "scaled")

    def __init__(self) -> None:
        self.mask: Array | None = None  # the drawn 0/1 uint8 mask, canonical (a view in columns)
        self.scaled: Array | None = None  # mask / keep_prob, laid out like x


def draw(seed: int, shape: tuple[int, ...], keep_prob: float) -> Array:
    """The client's own draw, default_rng(seed).random(shape) < keep_prob, as 0/1 uint8.

    uint8 is the bool array's own bytes (a view, no copy): the answer writes it as 0 and 1,
    in one byte a number where float64 would take eight (base64 writes it as float64).
    """
    kept = np.random.default_rng(seed).random(shape) < keep_prob  # the randoms are freed here
    return kept.view(np.uint8)


def mask_of(x: Array, settings: Settings) -> Array:
    """The canonical 0/1 mask, shaped like x: the sent one, or the one the seed draws."""
    if settings.get("mask") is not None:
        return settings["mask"]
    if x.ndim == 4 and settings.get("channels_last"):  # drawn (N, H, W, C), viewed as NCHW
        n, c, h, w = x.shape
        return draw(settings["seed"], (n, h, w, c), settings["keep_prob"]).transpose(0, 3, 1, 2)
    if x.ndim == 4:
        return draw(settings["seed"], x.shape, settings["keep_prob"])
    if settings.get("columns"):
        return draw(settings["seed"], x.shape[::-1], settings["keep_prob"]).T
    return draw(settings["seed"], x.shape, settings["keep_prob"])


def forward(x: Array, params: Params, settings: Settings) -> tuple[Array, tuple]:
    cache: MaskCache = settings.get("cache") or MaskCache()
    scaled = cache.scaled
    if scaled is None or scaled.shape != x.shape:
        mask = mask_of(x, settings)
        # once per request, laid out like x so that both multiplies run over contiguous memory
        scaled = np.divide(mask, settings["keep_prob"], out=np.empty_like(x))
        if settings.get("mask") is None:
            cache.mask = mask
        cache.scaled = scaled
    return x * scaled, (scaled, cache.mask)


def backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, dict]:
    scaled, _ = cache
    return (dout * scaled if need_dx else None), {}


def state(cache: tuple, settings: Settings) -> dict[str, Array]:
    """The mask drawn from the seed (a sent mask is not echoed)."""
    _, drawn = cache
    return {} if drawn is None else {"mask": drawn}


def state_shapes(batch: int, n_in: int, settings: Settings) -> dict[str, tuple[int, ...]]:
    """What ``state`` will answer, before anything is drawn (for the cost model: its size;
    an image's mask is (batch, C, H, W), of the same size)."""
    return {} if settings.get("mask") is not None else {"mask": (batch, n_in)}


def cost(batch: int, layer: LayerShape) -> LayerCost:
    """out = x * scaled, a = f(out); backward dout * scaled.  Kept: z, a and mask / keep_prob,
    and with a seed the drawn mask (one byte a number, answered, shared by every pass); the
    draw holds its float64 randoms and their bool comparison at once."""
    activations = batch * layer.n_out
    drawn = bool(layer.state)
    return LayerCost(
        kept=int((3 + (1 / 8 if drawn else 0)) * activations) + (1 if drawn else 0),
        gradients=activations,
        scratch=int((SCRATCH + (DRAW if drawn else 0)) * activations),
        forward_flops=(3 if drawn else 2) * activations,
        flops=(5 if drawn else 4) * activations,
        what=f"batch {batch:,} x {layer.n_out:,} units"
        + (" with a dropout mask drawn from a seed" if drawn else ""),
    )


def dropout_layer(
    keep_prob: float,
    mask: Array | None = None,
    seed: int | None = None,
    columns: bool = False,
    activation: str = "identity",
    channels_last: bool = False,
) -> Layer:
    """A dropout Layer: a canonical 0/1 ``mask`` shaped like its input, or a ``seed`` whose
    mask is drawn in the client's layout ((n, batch) when ``columns``; (N, H, W, C) images
    when ``channels_last``)."""
    from ..problem import Layer  # the problem module imports this package

    if (mask is None) == (seed is None):
        raise ValueError("a dropout layer takes a mask or a seed, exactly one")
    settings: Mapping[str, Any] = {
        "keep_prob": keep_prob,
        "mask": mask,
        "seed": seed,
        "columns": columns,
        "channels_last": channels_last,
        "cache": MaskCache(),
    }
    return Layer("dropout", {}, activation, settings)


DROPOUT = Kind(
    name="dropout",
    gradients={},
    regularised=(),
    units_out=lambda n_in, params: n_in,
    forward=forward,
    backward=backward,
    cost=cost,
    state=state,
    state_shapes=state_shapes,
    sample_out=lambda shape, params, settings: shape,  # (n,) rows or (C, H, W) images
)
