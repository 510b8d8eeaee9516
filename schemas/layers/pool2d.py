"""maxpool2d and avgpool2d at the boundary: the window, its step, and max pooling's ties.

A window that does not fit is dropped (the output size rounds down), as PyTorch
(ceil_mode=False) and Ng's int(1 + (n_H - f) / stride) do; only a window larger
than the input itself is refused.
"""

from __future__ import annotations

from service.core import Layer
from service.core.layers.pool2d import TIES, pooled_size

from ..base import StrictSchema
from ..conventions import Convention
from ..fields import one_of
from .base import ACTIVATION_NAMES, Chained, LayerType
from .pair import Pair

TIES_TEXT = (
    "where a window's gradient goes when several positions hold its maximum: first (the "
    "first in row-major order: PyTorch, CS231n) or all (every tied position, as Andrew Ng's "
    "mask = (x == np.max(x)))"
)


class AvgPool2dLayerSchema(StrictSchema):
    type = one_of(("avgpool2d",), "layer type", required=True)
    pool = Pair(
        1,
        "pool size",
        required=True,
        metadata={"description": "the window: n or [height, width]"},
    )
    stride = Pair(
        1,
        "stride",
        metadata={"description": "the step between windows: n or [height, width] (default: pool)"},
    )
    activation = one_of(ACTIVATION_NAMES, "activation", load_default=None)


class MaxPool2dLayerSchema(AvgPool2dLayerSchema):
    type = one_of(("maxpool2d",), "layer type", required=True)
    ties = one_of(TIES, "ties", load_default="first", metadata={"description": TIES_TEXT})


def chain(layer: dict, c: Convention, batch: int, sample: tuple, source: str) -> Chained:
    channels, height, width = sample
    pool, stride = layer["pool"], layer.get("stride") or layer["pool"]
    if pool[0] > height or pool[1] > width:
        return Chained(
            {
                "pool": [
                    f"the window {pool[0]} x {pool[1]} is larger than the input, {height} x "
                    f"{width} ({source}): no window fits. Send a pool of at most "
                    f"[{height}, {width}]."
                ]
            },
            None,
        )
    out = (pooled_size(height, pool[0], stride[0]), pooled_size(width, pool[1], stride[1]))
    return Chained({}, (channels, *out))


def to_core(layer: dict, c: Convention, sample: tuple) -> Layer:
    settings = {"pool": layer["pool"], "stride": layer.get("stride") or layer["pool"]}
    if "ties" in layer:
        settings["ties"] = layer["ties"]
    return Layer(layer["type"], {}, layer["activation"], settings)


def _type(name: str, schema) -> LayerType:
    return LayerType(name, schema, chain, to_core, layouts=lambda layer: {}, takes="image")


MAXPOOL2D = _type("maxpool2d", MaxPool2dLayerSchema)
AVGPOOL2D = _type("avgpool2d", AvgPool2dLayerSchema)
