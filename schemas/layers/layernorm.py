"""The layernorm layer at the boundary: CS231n's layernorm_forward/backward.

gamma and beta are per feature, shaped like a bias in the convention; flattened for the
core (service.core.layers.layernorm) and their gradients answered in the shapes sent.
"""

from __future__ import annotations

from service.core import Layer

from ..conventions import Convention
from ..fields import one_of
from .base import Chained, LayerType
from .per_feature import NormLayerSchema, vector_errors


class LayernormLayerSchema(NormLayerSchema):
    type = one_of(("layernorm",), "layer type", required=True)


def chain(layer: dict, c: Convention, batch: int, width: int, source: str) -> Chained:
    """gamma and beta must match the input's width; the width goes on unchanged."""
    return Chained(vector_errors(layer, ("gamma", "beta"), c, batch, width, source), width)


def to_core(layer: dict, c: Convention, width: int) -> Layer:
    return Layer(
        "layernorm",
        {"gamma": layer["gamma"].reshape(-1), "beta": layer["beta"].reshape(-1)},
        layer["activation"],
        {"eps": layer["eps"]},
    )


def layouts(layer: dict) -> dict:
    return {"dgamma": layer["gamma"].shape, "dbeta": layer["beta"].shape}


LAYERNORM = LayerType(
    name="layernorm",
    schema=LayernormLayerSchema,
    chain=chain,
    to_core=to_core,
    layouts=layouts,
)
