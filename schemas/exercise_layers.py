"""/v1/exercises' per-layer specs: which layer kinds to generate, and the generated problem
laid out as a /v1/gradients request.

A spec says what a teacher chooses (a dense layer's units and bias, a batchnorm's mode and
variance, a dropout's keep_prob); the numbers are drawn (service.core.exercise_layers).
The fields shared with /v1/gradients' layer objects are those objects' own fields, so
their rules and messages are the same; the rules across fields and layers are
/v1/gradients' too: the generated problem is loaded by its schema before it is solved.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cache

import numpy as np
from marshmallow import Schema, fields, validate

from service.core.exercise_layers import GENERATED_KINDS, LayerSpec
from service.core.problem import Layer

from .base import StrictSchema
from .conventions import Convention
from .fields import Flag, Whole, one_of
from .layers import ACTIVATION_NAMES, LAYER_TYPES, type_named
from .layers.batchnorm import BatchnormLayerSchema
from .layers.conv2d import Conv2dLayerSchema
from .layers.dropout import DropoutLayerSchema
from .layers.groupnorm import GroupnormLayerSchema
from .layers.pair import Pair
from .layers.per_feature import NormLayerSchema
from .layers.pool2d import MaxPool2dLayerSchema
from .shape_rules import image_loss_problem, shape_errors
from .target_rules import loss_errors

MAX_UNITS = 1024
_BATCHNORM = BatchnormLayerSchema._declared_fields
_NORM = NormLayerSchema._declared_fields
_CONV = Conv2dLayerSchema._declared_fields
_POOL = MaxPool2dLayerSchema._declared_fields
#: what a refusal by /v1/gradients' own rules says first, on an exercise's field
REFUSED = "the generated problem would be refused by /v1/gradients: "


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


def described(field: fields.Field, description: str) -> fields.Field:
    """/v1/gradients' own field (its validation, its messages), described for an exercise."""
    field = copy.copy(field)
    field.metadata = {**field.metadata, "description": description}
    return field


class BatchnormSpecSchema(StrictSchema):
    type = one_of(("batchnorm",), "layer type", required=True)
    mode = described(
        _BATCHNORM["mode"],
        "train: normalise with the batch's statistics; eval: with running_mean and running_var, "
        "which are then generated",
    )
    variance = _BATCHNORM["variance"]
    momentum = described(
        _BATCHNORM["momentum"],
        "with running: running = momentum * running + (1 - momentum) * batch statistic",
    )
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


class GroupnormSpecSchema(StrictSchema):
    type = one_of(("groupnorm",), "layer type", required=True)
    groups = GroupnormLayerSchema._declared_fields["groups"]
    eps = _NORM["eps"]
    activation = _NORM["activation"]


class DropoutSpecSchema(StrictSchema):
    type = one_of(("dropout",), "layer type", required=True)
    keep_prob = DropoutLayerSchema._declared_fields["keep_prob"]
    activation = DropoutLayerSchema._declared_fields["activation"]


class Conv2dSpecSchema(StrictSchema):
    type = one_of(("conv2d",), "layer type", required=True)
    filters = Whole(
        required=True,
        validate=validate.Range(min=1, max=MAX_UNITS),
        metadata={"description": "F, the number of filters (output channels)"},
    )
    size = Pair(
        1,
        "filter size",
        required=True,
        metadata={"description": "each filter's HH x WW: n or [height, width]"},
    )
    stride = _CONV["stride"]
    pad = _CONV["pad"]
    bias = Flag(
        load_default=True, metadata={"description": "false: filters without a bias (no db)"}
    )
    activation = _CONV["activation"]


class AvgPool2dSpecSchema(StrictSchema):
    type = one_of(("avgpool2d",), "layer type", required=True)
    pool = _POOL["pool"]
    stride = _POOL["stride"]
    activation = _POOL["activation"]


class MaxPool2dSpecSchema(AvgPool2dSpecSchema):
    type = one_of(("maxpool2d",), "layer type", required=True)
    ties = _POOL["ties"]


class FlattenSpecSchema(StrictSchema):
    type = one_of(("flatten",), "layer type", required=True)
    activation = _POOL["activation"]


SPEC_SCHEMAS: dict[str, type[Schema]] = {
    "dense": DenseSpecSchema,
    "batchnorm": BatchnormSpecSchema,
    "layernorm": LayernormSpecSchema,
    "dropout": DropoutSpecSchema,
    "conv2d": Conv2dSpecSchema,
    "maxpool2d": MaxPool2dSpecSchema,
    "avgpool2d": AvgPool2dSpecSchema,
    "flatten": FlattenSpecSchema,
    "groupnorm": GroupnormSpecSchema,
}
#: every layer type /v1/gradients knows can be generated: a new one cannot be forgotten here
assert tuple(SPEC_SCHEMAS) == GENERATED_KINDS and set(SPEC_SCHEMAS) == set(LAYER_TYPES)


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
        kind = type_named(value, SPEC_SCHEMAS)
        spec = _schema(kind).load(value)
        spec.pop("type", None)
        activation = spec.pop("activation", None) or "identity"
        if kind == "dense":
            return LayerSpec("dense", activation, units=spec["units"], bias=spec["bias"])
        if kind == "conv2d":
            units, bias = spec.pop("filters"), spec.pop("bias")
            return LayerSpec(kind, activation, units=units, bias=bias, settings=spec)
        if kind in ("maxpool2d", "avgpool2d"):
            spec.setdefault("stride", None)  # the pool's own size
        return LayerSpec(kind, activation, settings=spec)


def lay_out(
    problem_layers: tuple[Layer, ...],
    specs: tuple[LayerSpec, ...],
    c: Convention,
    vector: Callable[[int], tuple[int, ...]],
    samples: list[tuple[int, ...]],
) -> list[dict]:
    """The generated layers as /v1/gradients layer objects, in the client's convention;
    ``vector(n)`` is the shape of a bias or a norm's per-feature vector over rows, and
    ``samples`` one sample's shape into each layer: a norm's vectors over images are (C,),
    in every convention and layout (as a convolution's biases)."""

    documents = []
    for layer, spec, sample in zip(problem_layers, specs, samples):

        def shaped(array: np.ndarray, images: bool = len(sample) == 3) -> np.ndarray:
            return array if images else array.reshape(vector(array.size))

        if layer.kind == "dense":
            document = {"weights": c.weights(layer.weights)}
            if layer.biases is not None:
                document["biases"] = shaped(layer.biases)
        elif layer.kind == "dropout":
            s = layer.settings
            document = {"type": "dropout", "keep_prob": s["keep_prob"], "seed": s["seed"]}
        elif layer.kind == "conv2d":
            s = layer.settings
            document = {"type": "conv2d", "weights": c.filters(layer.weights, back=True)}
            if layer.biases is not None:
                document["biases"] = layer.biases
            document |= {"stride": list(s["stride"]), "pad": list(s["pad"])}
        elif layer.kind in ("maxpool2d", "avgpool2d", "flatten"):
            document = {"type": layer.kind}
            document |= {k: list(v) for k, v in layer.settings.items() if k in ("pool", "stride")}
            if "ties" in layer.settings:
                document["ties"] = layer.settings["ties"]
        else:
            document = {"type": layer.kind} | {k: shaped(v) for k, v in layer.params.items()}
            if layer.kind == "groupnorm":
                document["groups"] = layer.settings["groups"]
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


def skeleton_errors(
    specs: list[LayerSpec],
    input_shape: tuple[int, ...],
    batch: int,
    c: Convention,
    vector: Callable[[int], tuple[int, ...]],
    loss: str,
) -> dict:
    """/v1/gradients' own shape rules, before anything is drawn: the problem's skeleton
    (every array a zero-strided view of one 0.0, so no memory) checked by its shape rules
    and its loss's activation rule.  Errors by the exercise's field paths (a convolution's
    filters are its size), each message saying whose rule it is."""

    def zeros(shape) -> np.ndarray:
        return np.broadcast_to(0.0, tuple(shape))

    layers, sample = [], input_shape
    for spec in specs:
        s, n = spec.settings, sample[0]
        per_feature = (n,) if len(sample) == 3 else vector(n)  # as lay_out lays them out
        layer = {"type": spec.kind, "activation": spec.activation}
        if spec.kind == "dense":
            layer["weights"] = zeros(c.weights_shape(n, spec.units))
            layer["biases"] = zeros(vector(spec.units)) if spec.bias else None
        elif spec.kind in ("batchnorm", "layernorm", "groupnorm"):
            layer |= {"gamma": zeros(per_feature), "beta": zeros(per_feature), "eps": s["eps"]}
            if spec.kind == "groupnorm":
                layer["groups"] = s["groups"]
            if spec.kind == "batchnorm":
                running = s["mode"] == "eval" or s["running"]
                layer |= {k: s[k] for k in ("mode", "variance", "momentum")}
                layer |= {k: zeros(per_feature) if running else None for k in RUNNING}
        elif spec.kind == "dropout":
            layer |= {"keep_prob": s["keep_prob"], "mask": None, "seed": 0}
        elif spec.kind == "conv2d":
            filters = (spec.units, n, *s["size"])
            layer["weights"] = c.filters(zeros(filters), back=True)
            layer["biases"] = zeros((spec.units,)) if spec.bias else None
            layer |= {"stride": s["stride"], "pad": s["pad"]}
        elif spec.kind in ("maxpool2d", "avgpool2d"):
            layer |= {k: s[k] for k in ("pool", "stride", "ties") if s.get(k) is not None}
        layers.append(layer)
        takes = LAYER_TYPES[spec.kind].takes
        if takes == "any" or (takes == "image") == (len(sample) == 3):
            sample = spec.sample_out(sample)  # else refused by its type: the sample goes on
    data = {
        "inputs": zeros(c.sample_shape(batch, input_shape)),
        "layers": layers,
        "targets": None,
        "loss": None,
        "upstream": None,
        "convention": c.name,
        "layout": c.layout,
    }
    errors = shape_errors(data).get("layers", {})
    for i, layer_errors in errors.items():
        if specs[i].kind == "conv2d" and "weights" in layer_errors:
            layer_errors["size"] = layer_errors.pop("weights")
    if errors:
        return {"layers": refused_by_gradients(errors)}
    if len(sample) == 3:
        return {"loss": [REFUSED + image_loss_problem(c, len(specs) - 1, batch, sample)]}
    return refused_by_gradients(loss_errors(data | {"loss": loss}))


RUNNING = ("running_mean", "running_var")


def refused_by_gradients(messages):
    """Every message of a nested error tree, saying it is /v1/gradients' rule."""
    if isinstance(messages, dict):
        return {key: refused_by_gradients(value) for key, value in messages.items()}
    if isinstance(messages, list):
        return [refused_by_gradients(message) for message in messages]
    return REFUSED + messages if isinstance(messages, str) else messages
