"""The groupnorm layer at the boundary: CS231n's spatial_groupnorm_forward/backward.

It takes images only; ``groups`` G must divide their channels C.  gamma and beta hold one
value per channel: (C,), or (1, C, 1, 1) in NCHW (CS231n's shape), (1, 1, 1, C) in NHWC.
They are flattened for the core (service.core.layers.groupnorm) and their gradients
answered in the shapes sent.
"""

from __future__ import annotations

from marshmallow import validate

from service.core import Layer

from ..conventions import Convention
from ..fields import Whole, one_of
from .base import Chained, LayerType
from .per_feature import CHANNEL_SHAPES, NormLayerSchema, channel_errors, vector_field


class GroupnormLayerSchema(NormLayerSchema):
    type = one_of(("groupnorm",), "layer type", required=True)
    groups = Whole(
        required=True,
        validate=validate.Range(min=1, error="must be at least 1 (got {input})."),
        error_messages={
            "required": (
                "missing: the number of groups G the channels are split into (CS231n's G, "
                "torch's num_groups); it must divide the number of channels."
            )
        },
        metadata={
            "minimum": 1,
            "description": (
                "G, the number of groups of contiguous channels, each normalised over its "
                "C/G channels x H x W per sample; it must divide C (1: layernorm over each "
                "image; C: instance norm)"
            ),
        },
    )
    gamma = vector_field(
        "gamma",
        required=True,
        extra=" The answer's dgamma has its shape.",
        shapes=CHANNEL_SHAPES,
        ndims=(1, 4),
        per="channel",
    )
    beta = vector_field(
        "beta",
        required=True,
        extra=" The answer's dbeta has its shape.",
        shapes=CHANNEL_SHAPES,
        ndims=(1, 4),
        per="channel",
    )


def divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def chain(layer: dict, c: Convention, batch: int, sample: tuple, source: str) -> Chained:
    """groups must divide the channels; gamma and beta hold one value per channel.  The
    images go on unchanged, so the layers above are checked whatever is wrong here."""
    channels = sample[0]
    errors = channel_errors(layer, ("gamma", "beta"), c, channels, source)
    groups = layer["groups"]
    if channels % groups:
        works = ", ".join(map(str, divisors(channels)))
        errors["groups"] = [
            f"got {groups}, which does not divide the {channels} channel(s) ({source}): each "
            f"group holds C / G contiguous channels, so G must divide C. Send one of "
            f"{works} (1: layernorm over each image; {channels}: instance norm)."
        ]
    return Chained(errors, sample)


def to_core(layer: dict, c: Convention, sample: tuple) -> Layer:
    return Layer(
        "groupnorm",
        {"gamma": layer["gamma"].reshape(-1), "beta": layer["beta"].reshape(-1)},
        layer["activation"],
        {"groups": layer["groups"], "eps": layer["eps"]},
    )


def layouts(layer: dict) -> dict:
    return {"dgamma": layer["gamma"].shape, "dbeta": layer["beta"].shape}


GROUPNORM = LayerType(
    name="groupnorm",
    schema=GroupnormLayerSchema,
    chain=chain,
    to_core=to_core,
    layouts=layouts,
    takes="image",
)
