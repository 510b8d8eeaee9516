"""/v1/exercises' per-layer specs: which layer kinds to generate, and the generated problem
laid out as a /v1/gradients request.

A spec says what a teacher chooses (a dense layer's units and bias, a batchnorm's mode and
variance, a dropout's keep_prob); the numbers are drawn (service.core.exercise_layers).
The fields shared with /v1/gradients' layer objects are those objects' own fields, so
their rules and messages are the same; the rules across fields and layers are
/v1/gradients' too: the generated problem is loaded by its schema before it is solved.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from marshmallow import Schema, ValidationError, fields, validate

from service.core.exercise_layers import GENERATED_KINDS, LayerSpec
from service.core.problem import Layer

from .base import StrictSchema
from .conventions import Convention
from .fields import Choice, Flag, Whole, json_type, one_of
from .layers import ACTIVATION_NAMES, LAYER_TYPES
from .layers.batchnorm import BatchnormLayerSchema
from .layers.dropout import DropoutLayerSchema
from .layers.per_feature import NormLayerSchema

MAX_UNITS = 1024
_BATCHNORM = BatchnormLayerSchema._declared_fields
_NORM = NormLayerSchema._declared_fields


class DenseSpecSchema(StrictSchema):
    type = one_of(
        ("dense",), "layer type", metadata={"description": "dense (the default when absent)"}
    )
    units = Whole(required=True, validate=validate.Range(min=1, max=MAX_UNITS))
    activation = one_of(ACTIVATION_NAMES, "activation", required=True)
    bias = Flag(
        load_default=True,
        metadata={"description": "false: a layer without a bias (no biases, no db)"},
    )


class BatchnormSpecSchema(StrictSchema):
    type = one_of(("batchnorm",), "layer type", required=True)
    mode = _BATCHNORM["mode"]
    variance = _BATCHNORM["variance"]
    momentum = _BATCHNORM["momentum"]
    eps = _NORM["eps"]
    running = Flag(
        load_default=False,
        metadata={
            "description": (
                "train mode: also send running_mean and running_var, so the solution holds "
                "them updated (eval mode always sends them)"
            )
        },
    )
    activation = _NORM["activation"]


class LayernormSpecSchema(StrictSchema):
    type = one_of(("layernorm",), "layer type", required=True)
    eps = _NORM["eps"]
    activation = _NORM["activation"]


class DropoutSpecSchema(StrictSchema):
    type = one_of(("dropout",), "layer type", required=True)
    keep_prob = DropoutLayerSchema._declared_fields["keep_prob"]
    activation = DropoutLayerSchema._declared_fields["activation"]


SPEC_SCHEMAS: dict[str, type[Schema]] = {
    "dense": DenseSpecSchema,
    "batchnorm": BatchnormSpecSchema,
    "layernorm": LayernormSpecSchema,
    "dropout": DropoutSpecSchema,
}
assert tuple(SPEC_SCHEMAS) == GENERATED_KINDS


def spec_component_name(kind: str) -> str:
    """The spec's schema in the OpenAPI document: ExerciseDenseLayer, ..."""
    return f"Exercise{kind.capitalize()}Layer"


@cache
def _schema(kind: str) -> Schema:
    return SPEC_SCHEMAS[kind]()


class LayerSpecField(fields.Field):
    """One layer to generate, loaded with the spec schema its ``type`` names (absent: dense)."""

    default_error_messages = {"invalid": "expected a JSON object (one layer to generate)."}

    def _deserialize(self, value, attr, data, **kwargs) -> LayerSpec:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        kind = value.get("type", "dense")
        if not isinstance(kind, str):
            raise ValidationError({"type": [f"expected a layer type name, got {json_type(kind)}."]})
        if kind in LAYER_TYPES and kind not in SPEC_SCHEMAS:
            raise ValidationError(
                {
                    "type": [
                        f"{kind!r} is a layer type of /v1/gradients that exercises do not "
                        f"generate yet; they generate {', '.join(SPEC_SCHEMAS)}."
                    ]
                }
            )
        try:
            Choice(SPEC_SCHEMAS, "layer type")(kind)
        except ValidationError as error:
            raise ValidationError({"type": error.messages}) from None
        spec = _schema(kind).load(value)
        spec.pop("type", None)
        activation = spec.pop("activation", None) or "identity"
        if kind == "dense":
            return LayerSpec("dense", activation, units=spec["units"], bias=spec["bias"])
        return LayerSpec(kind, activation, settings=spec)


def lay_out(
    problem_layers: tuple[Layer, ...],
    specs: tuple[LayerSpec, ...],
    c: Convention,
    vector: Callable[[int], tuple[int, ...]],
) -> list[dict]:
    """The generated layers as /v1/gradients layer objects, in the client's convention;
    ``vector(n)`` is the shape of a bias or a norm's per-feature vector."""

    def shaped(array: np.ndarray) -> np.ndarray:
        return array.reshape(vector(array.size))

    documents = []
    for layer, spec in zip(problem_layers, specs):
        if layer.kind == "dense":
            document = {"weights": c.weights(layer.weights)}
            if layer.biases is not None:
                document["biases"] = shaped(layer.biases)
        elif layer.kind == "dropout":
            s = layer.settings
            document = {"type": "dropout", "keep_prob": s["keep_prob"], "seed": s["seed"]}
        else:
            document = {"type": layer.kind} | {k: shaped(v) for k, v in layer.params.items()}
            if layer.kind == "batchnorm":
                document |= {name: spec.settings[name] for name in ("mode", "variance")}
                if layer.settings["running_mean"] is not None:
                    document |= {
                        name: shaped(layer.settings[name])
                        for name in ("running_mean", "running_var")
                    }
                    if spec.settings["mode"] == "train":
                        document["momentum"] = spec.settings["momentum"]
            document["eps"] = spec.settings["eps"]
        document["activation"] = layer.activation
        documents.append(document)
    return documents
