"""Layer types at the boundary: one module per type, one registry, one field that dispatches.

A layer object's ``"type"`` (absent: ``"dense"``) picks its schema here; each
type's module says which fields it accepts, how it chains onto the layer below
(its shape rules, with messages), how it becomes the core's canonical
``Layer``, and in which layout each array of its answer goes back to the
client.  The core's side of the same type lives in service.core.layers.

Adding a type is adding its module and one line to ``LAYER_TYPES``; the
request schema, the shape rules' loop, the answer and the OpenAPI document
(a oneOf keyed by ``type``) take it from there.
"""

from __future__ import annotations

from functools import cache

from marshmallow import Schema, ValidationError, fields

from ..fields import Choice, json_type
from .base import ACTIVATION_NAMES, DATA, FILTERS, WEIGHTS, Chained, LayerType, Layout
from .batchnorm import BATCHNORM
from .conv2d import CONV2D
from .dense import DENSE
from .dropout import DROPOUT
from .flatten import FLATTEN
from .groupnorm import GROUPNORM
from .layernorm import LAYERNORM
from .pool2d import AVGPOOL2D, MAXPOOL2D

LAYER_TYPES: dict[str, LayerType] = {
    kind.name: kind
    for kind in (
        DENSE,
        BATCHNORM,
        LAYERNORM,
        DROPOUT,
        CONV2D,
        MAXPOOL2D,
        AVGPOOL2D,
        FLATTEN,
        GROUPNORM,
    )
}


def component_name(kind: str) -> str:
    """The layer type's schema in the OpenAPI document: DenseLayer, BatchnormLayer, ..."""
    return f"{kind.capitalize()}Layer"


@cache
def _schema(kind: str) -> Schema:
    """One schema instance per layer type, shared: building one deep-copies its fields,
    which made a small request 12-23% slower when it happened for every layer (bench.compare).
    A loading schema keeps no state between loads."""
    return LAYER_TYPES[kind].schema()


def type_named(value: dict, types) -> str:
    """A layer object's ``type`` (absent: dense), one of ``types``, read before any other
    field so that a misspelt type gets a did-you-mean rather than another type's fields."""
    kind = value.get("type", "dense")
    if not isinstance(kind, str):
        raise ValidationError({"type": [f"expected a layer type name, got {json_type(kind)}."]})
    try:
        Choice(types, "layer type")(kind)
    except ValidationError as error:
        raise ValidationError({"type": error.messages}) from None
    return kind


class LayerField(fields.Field):
    """One layer object, loaded with the schema its ``type`` names.

    The type is read first, so a misspelt type gets a did-you-mean rather than
    a list of fields some other type would have wanted.
    """

    default_error_messages = {"invalid": "expected a JSON object (one layer)."}

    def _deserialize(self, value, attr, data, **kwargs) -> dict:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        kind = type_named(value, LAYER_TYPES)
        layer = _schema(kind).load(value)
        layer["type"] = kind
        if layer.get("activation") is None:
            layer["activation"] = LAYER_TYPES[kind].default_activation
        return layer


__all__ = [
    "ACTIVATION_NAMES",
    "DATA",
    "FILTERS",
    "LAYER_TYPES",
    "WEIGHTS",
    "Chained",
    "LayerField",
    "LayerType",
    "Layout",
    "component_name",
]
