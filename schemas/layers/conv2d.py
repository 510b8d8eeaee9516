"""The conv2d layer at the boundary: filters in the request's layout, stride and pad.

Weights are (F, C, HH, WW) in NCHW (CS231n, PyTorch) and (HH, WW, C, F) in NHWC
(Andrew Ng's W); the convention (numpy, torch, columns) says nothing about them.
Biases are (F,), Ng's (1, 1, 1, F), or omitted; db comes back in the shape sent.
An output size that is not whole is refused, naming the pad or stride that would
make it whole: CS231n asserts it, and it is almost always a wrong pad or stride.
"""

from __future__ import annotations

from service.core import Layer

from ..base import StrictSchema
from ..conventions import Convention
from ..fields import Array, one_of, shape_text
from .base import ACTIVATION_NAMES, FILTERS, Chained, LayerType
from .pair import Pair

AXES = ("height", "width")


class Conv2dLayerSchema(StrictSchema):
    type = one_of(("conv2d",), "layer type", required=True)
    weights = Array(
        ndims=(4,),
        required=True,
        metadata={
            "description": (
                "4-D filters: (F, C, HH, WW) in the NCHW layout (CS231n, PyTorch), "
                "(HH, WW, C, F) in NHWC (Andrew Ng's W). dW comes back in the same layout."
            )
        },
    )
    biases = Array(
        ndims=(1, 4),
        allow_none=True,
        load_default=None,
        metadata={
            "description": (
                "(F,), or Andrew Ng's (1, 1, 1, F); omitted or null: no bias and no db. "
                "db comes back in the shape sent."
            )
        },
    )
    stride = Pair(
        1,
        "stride",
        load_default=(1, 1),
        metadata={"description": "the step between windows: n or [height, width] (default 1)"},
    )
    pad = Pair(
        0,
        "padding",
        load_default=(0, 0),
        metadata={
            "description": (
                "zeros added on every side: n or [height, width] (default 0). The output size "
                "(H + 2 pad - HH) / stride + 1 must be whole."
            )
        },
    )
    activation = one_of(ACTIVATION_NAMES, "activation", load_default=None)


def filters_text(c: Convention, f, channels, hh, ww) -> str:
    return shape_text((hh, ww, channels, f) if c.channels_last else (f, channels, hh, ww))


def chain(layer: dict, c: Convention, batch: int, sample: tuple, source: str) -> Chained:
    weights, biases = layer["weights"], layer["biases"]
    channels, height, width = sample
    f, wc, hh, ww = c.filters(weights).shape
    if wc != channels:
        return Chained({"weights": [channels_message(c, weights.shape, channels, source)]}, None)
    errors: dict = {}
    if biases is not None and biases.shape not in ((f,), (1, 1, 1, f)):
        errors["biases"] = [
            f"got shape {shape_text(biases.shape)}, expected ({f},) or (1, 1, 1, {f}): one bias "
            f"per filter, and the weights {shape_text(weights.shape)} hold {f} filter(s) in the "
            f"{c.layout} layout."
        ]
    sizes, problems = [], []
    for axis, size, kernel, stride, pad in zip(
        AXES, (height, width), (hh, ww), layer["stride"], layer["pad"]
    ):
        span = size + 2 * pad - kernel
        if span < 0:
            return Chained(
                {
                    "weights": [
                        f"the filters are {kernel} high/wide on the {axis} axis, more than the "
                        f"input's {size} plus 2 x pad {pad}: {source}. Send smaller filters or "
                        f"a pad of at least {-(-(kernel - size) // 2)}."
                    ]
                },
                None,
            )
        sizes.append(span // stride + 1)
        if span % stride:
            problems.append(whole_size_message(axis, size, kernel, stride, pad))
    if problems:
        errors["_schema"] = problems
        return Chained(errors, None)
    return Chained(errors, (f, *sizes))


def whole_size_message(axis: str, size: int, kernel: int, stride: int, pad: int) -> str:
    """The output size is not whole on one axis: what it is, and the pad or stride that fixes it."""
    span = size + 2 * pad - kernel
    pads = [p for p in range(pad, pad + stride) if (size + 2 * p - kernel) % stride == 0]
    strides = [s for s in range(stride - 1, 0, -1) if span % s == 0]
    fixes = []
    if pads:
        fixes.append(f"a pad of {pads[0]} on the {axis} axis")
    if strides:
        fixes.append(f"a stride of {strides[0]}")
    return (
        f"the output {axis} (H + 2*pad - HH) / stride + 1 = ({size} + 2*{pad} - {kernel}) / "
        f"{stride} + 1 = {span / stride + 1:g} is not whole: the last window would hang over "
        f"the padded input. {' or '.join(fixes).capitalize()} would make it whole."
    )


def channels_message(c: Convention, shape: tuple, channels: int, source: str) -> str:
    """The filters' channels do not match the input's: what they must be (and the layout hint)."""
    f, wc, hh, ww = c.filters_shape_of(shape)
    message = (
        f"got shape {shape_text(shape)}: filters of {wc} channel(s), but {source}, so in the "
        f"{c.layout} layout the weights must be {filters_text(c, f, channels, hh, ww)} "
        f"({'(HH, WW, C, F)' if c.channels_last else '(F, C, HH, WW)'})."
    )
    other = "NCHW" if c.channels_last else "NHWC"
    other_channels = shape[1] if c.channels_last else shape[2]
    if other_channels == channels:
        message += (
            f' They look like {other} weights: set "layout" to "{other}" (and send the inputs '
            f"in it), or transpose them."
        )
    return message


def to_core(layer: dict, c: Convention, sample: tuple) -> Layer:
    biases = layer["biases"]
    params = {"weights": c.filters(layer["weights"])}
    if biases is not None:
        params["biases"] = biases.reshape(-1)
    settings = {"stride": layer["stride"], "pad": layer["pad"]}
    return Layer("conv2d", params, layer["activation"], settings)


def layouts(layer: dict) -> dict:
    biases = layer["biases"]
    return {"dW": FILTERS} | ({} if biases is None else {"db": biases.shape})


CONV2D = LayerType(
    name="conv2d",
    schema=Conv2dLayerSchema,
    chain=chain,
    to_core=to_core,
    layouts=layouts,
    takes="image",
)
