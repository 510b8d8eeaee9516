"""The flatten layer at the boundary: images to rows, in the request's layout's order.

NCHW flattens as CS231n's x.reshape(N, -1); NHWC as Andrew Ng's reshape of (m, H, W, C)
images: so the next dense layer's weights line up with the course's.  Its output
width is what that dense layer's weights are checked against.
"""

from __future__ import annotations

from math import prod

from service.core import Layer

from ..base import StrictSchema
from ..conventions import Convention
from ..fields import one_of
from .base import ACTIVATION_NAMES, Chained, LayerType


class FlattenLayerSchema(StrictSchema):
    type = one_of(("flatten",), "layer type", required=True)
    activation = one_of(ACTIVATION_NAMES, "activation", load_default=None)


def to_core(layer: dict, c: Convention, sample: tuple) -> Layer:
    return Layer("flatten", {}, layer["activation"], {"channels_last": c.channels_last})


FLATTEN = LayerType(
    name="flatten",
    schema=FlattenLayerSchema,
    chain=lambda layer, c, batch, sample, source: Chained({}, prod(sample)),
    to_core=to_core,
    layouts=lambda layer: {},
    takes="image",
)
