"""The dropout layer at the boundary: keep_prob, and a 0/1 mask or the seed that draws it.

It takes rows (batch, n) and images alike (elementwise): the mask is shaped like the
layer's input in the client's layout, (N, C, H, W) or (N, H, W, C) for images, and a seed
draws it in that shape.
"""

from __future__ import annotations

import numpy as np
from marshmallow import ValidationError, validate, validates_schema

from service.core import Layer
from service.core.layers.dropout import dropout_layer

from ..base import StrictSchema
from ..conventions import Convention
from ..fields import Array, Number, Whole, one_of, shape_text
from .base import ACTIVATION_NAMES, DATA, Chained, LayerType

SEED_RULE = "np.random.default_rng(seed).random(shape) < keep_prob"

ONE_OF_THEM = (
    "either the 0/1 mask, shaped like the layer's input (Andrew Ng's "
    "D = np.random.rand(...) < keep_prob, CS231n's mask), or a seed: the mask is then "
    f"{SEED_RULE}, shape being the layer's input in your data layout ((batch, n), or (n, batch) "
    "in the columns convention; images in your layout, (N, C, H, W) or (N, H, W, C)), and the "
    "answer's layer carries it."
)


class DropoutLayerSchema(StrictSchema):
    type = one_of(("dropout",), "layer type", required=True)
    keep_prob = Number(
        required=True,
        error_messages={
            "required": "missing: the probability of keeping a unit, in (0, 1] (for example 0.8)."
        },
        validate=validate.Range(
            min=0,
            max=1,
            min_inclusive=False,
            error=(
                "must be in (0, 1], the probability of keeping a unit, got {input}: 1 keeps "
                "every unit (no dropout); 0 would drop them all and divide by zero."
            ),
        ),
        metadata={
            "exclusiveMinimum": True,
            "description": "the probability of keeping a unit: out = x * mask / keep_prob",
        },
    )
    mask = Array(
        ndims=(2, 4),
        load_default=None,
        metadata={
            "description": (
                "0/1, shaped like the layer's input: (batch, n) in numpy and torch, (n, batch) in "
                "columns (Ng's D, CS231n's mask); images in the request's layout. Send it or "
                "seed, not both."
            )
        },
    )
    seed = Whole(
        load_default=None,
        validate=validate.Range(
            min=0, max=2**63 - 1, error="must be a whole number from 0 to 2**63 - 1, got {input}."
        ),
        metadata={
            "description": (
                f"instead of mask: the mask is {SEED_RULE}, shape being the layer's input in "
                "the client's data layout, and the answer's layer holds it"
            )
        },
    )
    activation = one_of(ACTIVATION_NAMES, "activation", load_default=None)

    @validates_schema(skip_on_field_errors=True)
    def _mask_or_seed(self, data, **kwargs):
        mask, seed = data["mask"], data["seed"]
        if mask is not None and seed is not None:
            raise ValidationError(
                {"mask": [f"mask and seed were both sent: send one of them, {ONE_OF_THEM}"]}
            )
        if mask is None and seed is None:
            raise ValidationError(
                {"mask": [f"missing: a dropout layer needs a mask or a seed; send {ONE_OF_THEM}"]}
            )
        if mask is not None:
            bad = np.argwhere((mask != 0) & (mask != 1))
            if bad.size:
                index = tuple(int(k) for k in bad[0])
                where = "".join(f"[{k}]" for k in index)
                raise ValidationError(
                    {
                        "mask": [
                            f"mask{where} is {float(mask[index]):g}: every entry must be 0 "
                            "(drop the unit) or 1 (keep it); the 1/keep_prob scaling is the "
                            "service's, so send D itself, not D / keep_prob."
                        ]
                    }
                )


def chain(layer: dict, c: Convention, batch: int, width: int | tuple, source: str) -> Chained:
    mask = layer["mask"]
    images = isinstance(width, tuple)
    expected = c.image_shape(batch, width) if images else c.data_shape(batch, width)
    if mask is None or mask.shape == expected:
        return Chained({}, width)
    if images:
        layout = f"{'(N, H, W, C)' if c.channels_last else '(N, C, H, W)'} images in the {c.layout}"
        layout += " layout"
    else:
        layout = f"{'(n, batch)' if c.samples_are_columns else '(batch, n)'} in the {c.name} "
        layout += "convention"
    message = (
        f"got {shape_text(mask.shape)}, expected {shape_text(expected)}: the mask covers the "
        f"layer's input, {layout}"
    )
    if not images and mask.shape == expected[::-1]:
        message += "; it looks transposed"
    message += f". The batch is {batch} (from the inputs) and {source}."
    return Chained({"mask": [message]}, width)


def to_core(layer: dict, c: Convention, width: int) -> Layer:
    mask = layer["mask"]
    return dropout_layer(
        layer["keep_prob"],
        mask=None if mask is None else c.data(mask),
        seed=layer["seed"],
        columns=c.samples_are_columns,
        activation=layer["activation"],
        channels_last=c.channels_last,
    )


def layouts(layer: dict) -> dict:
    return {} if layer["seed"] is None else {"mask": DATA}


DROPOUT = LayerType(
    name="dropout",
    schema=DropoutLayerSchema,
    chain=chain,
    to_core=to_core,
    layouts=layouts,
    takes="any",
)
