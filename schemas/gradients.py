"""POST /v1/gradients: the request, its shape rules, and the response.

The request schema parses once, checks every cross-field shape rule with a
message a student can act on, and loads into a ``GradientsRequest`` that
holds the canonical ``core.Problem`` and what is needed to answer in the
client's own shapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from service.core import (
    ACTIVATIONS,
    ALIASES,
    LOSSES,
    REDUCTIONS,
    Gradients,
    Layer,
    LayerResult,
    Problem,
)
from service.core.gradient_check import GradientCheck
from service.core.layers import KINDS
from service.core.network import L2_STYLES

from .base import StrictSchema
from .conventions import CONVENTIONS, Convention
from .fields import (
    MAX_LAYERS,
    Array,
    BoundedList,
    Choice,
    Flag,
    Number,
    one_of,
    positive_number,
)
from .shape_rules import shape_errors

INCLUDABLE = ("z", "a", "dz", "dx")
ENCODINGS = ("json", "base64")
ACTIVATION_NAMES = (*ACTIVATIONS, *ALIASES)


class LayerSchema(StrictSchema):
    type = one_of(
        KINDS,
        "layer type",
        load_default="dense",
        metadata={"description": "the layer's kind; absent means dense"},
    )
    weights = Array(
        ndims=(2,),
        required=True,
        metadata={
            "description": (
                "2-D: (n_in, n_out) in the numpy convention, (n_out, n_in) in torch and columns."
            )
        },
    )
    biases = Array(
        ndims=(1, 2),
        allow_none=True,
        load_default=None,
        metadata={
            "description": (
                "(n_out,) or (1, n_out) in numpy and torch; (n_out, 1) in columns. Omitted or "
                "null: a layer without a bias, and no db in the answer."
            )
        },
    )
    activation = one_of(ACTIVATION_NAMES, "activation", required=True)


@dataclass(frozen=True)
class GradientsRequest:
    """A validated request: the canonical problem and how to answer in the client's shapes."""

    problem: Problem
    convention: Convention
    bias_shapes: tuple[tuple[int, ...] | None, ...]  # None: a layer without a bias
    include: tuple[str, ...]
    learning_rate: float | None
    gradient_check: bool = False
    #: "base64": every array of the answer in the binary form (written by service.http.json)
    encoding: str = "json"

    def client_array(self, out: LayerResult, layer: int, name: str) -> np.ndarray:
        """One of a layer's results (z, a, dz, dx, dW, db) in the client's convention and shapes."""
        if name == "dW":
            return self.convention.weights(out.dW)
        if name == "db":
            return out.db.reshape(self.bias_shapes[layer])
        return self.convention.data(getattr(out, name))

    def present(
        self,
        result: Gradients,
        check: GradientCheck | None = None,
        updated: tuple[Layer, ...] | None = None,
    ) -> dict:
        """The core's canonical result (and ``updated`` layers), in the client's shapes.

        Arrays stay ndarrays: the JSON writer lays them out as lists or in the
        binary form, as ``encoding`` asks.
        """
        answer = {
            "loss": result.loss,
            "layers": [
                {name: self.client_array(out, i, name) for name in (*self.include, *out.grads)}
                for i, out in enumerate(result.layers)
            ],
        }
        if updated is not None:
            answer["updated_layers"] = [
                {"weights": self.convention.weights(layer.weights)}
                | ({} if shape is None else {"biases": layer.biases.reshape(shape)})
                for layer, shape in zip(updated, self.bias_shapes)
            ]
        if check is not None:
            answer["gradient_check"] = check
        return answer


class NetworkProblemSchema(StrictSchema):
    """The problem every endpoint shares: data, layers, loss, and their shape rules."""

    inputs = Array(
        ndims=(1, 2),  # 1-D is parsed only to be refused with the shape rules' advice
        documented_ndims=(2,),
        required=True,
        metadata={"description": ("(batch, n_in) in numpy and torch; (n_in, batch) in columns.")},
    )
    targets = Array(
        ndims=(1, 2),  # 1-D is parsed only to be refused with the shape rules' advice
        documented_ndims=(2,),
        load_default=None,
        metadata={
            "description": (
                "(batch, n_out) in numpy and torch; (n_out, batch) in columns. Required with "
                "loss; leave both out when sending upstream."
            )
        },
    )
    upstream = Array(
        ndims=(1, 2),  # 1-D is parsed only to be refused with the shape rules' advice
        documented_ndims=(2,),
        load_default=None,
        metadata={
            "description": (
                "instead of targets and loss: dL/d(the last layer's output after its "
                "activation), shaped like that output ((batch, n_out) in numpy and torch; "
                "(n_out, batch) in columns), as CS231n's dout. The answer's loss is then null."
            )
        },
    )
    layers = BoundedList(
        fields.Nested(LayerSchema),
        MAX_LAYERS,
        "layers",
        required=True,
        validate=validate.Length(min=1, error="at least one layer is needed."),
    )
    loss = one_of(LOSSES, "loss", load_default=None)
    reduction = one_of(REDUCTIONS, "reduction", load_default="mean")
    convention = one_of(CONVENTIONS, "convention", load_default="numpy")
    l2 = Number(
        load_default=0.0,
        validate=validate.Range(min=0, error="must not be negative (got {input})."),
    )
    l2_style = one_of(
        L2_STYLES,
        "l2_style",
        load_default="half",
        metadata={
            "description": (
                "half: 0.5 * l2 * sum(W**2), gradient l2 * W; full (CS231n): l2 * sum(W**2), "
                "gradient 2 * l2 * W"
            )
        },
    )

    @validates_schema(skip_on_field_errors=True)
    def _check_shapes(self, data, **kwargs):
        errors = shape_errors(data)
        if errors:
            raise ValidationError(errors)


class GradientsRequestSchema(NetworkProblemSchema):
    learning_rate = positive_number(load_default=None)
    include = BoundedList(
        fields.String(validate=Choice(INCLUDABLE, "array")),
        len(INCLUDABLE),
        "names",
        load_default=lambda: ["a"],
        metadata={
            "description": (
                "per-layer arrays to return besides the parameters' gradients; dx is dL/d(the "
                "layer's input), in the inputs' layout"
            )
        },
    )
    gradient_check = Flag(
        load_default=False,
        metadata={
            "description": (
                "also compare dW and db with central finite differences: per layer, the largest "
                "|analytic - numeric| / max(|analytic|, |numeric|, 1e-8)"
            )
        },
    )

    encoding = fields.String(
        load_default="json",
        validate=Choice(ENCODINGS, "encoding"),
        metadata={
            "enum": list(ENCODINGS),
            "description": "base64: every array of the answer as {dtype, shape, data}",
        },
    )

    @post_load
    def _to_request(self, data, **kwargs) -> GradientsRequest:
        return gradients_request(
            data,
            include=data["include"],
            learning_rate=data["learning_rate"],
            gradient_check=data["gradient_check"],
            encoding=data["encoding"],
        )


def gradients_request(
    data: dict,
    include: Iterable[str] = ("a",),
    learning_rate: float | None = None,
    gradient_check: bool = False,
    encoding: str = "json",
) -> GradientsRequest:
    """The validated fields of a NetworkProblemSchema, as canonical arrays."""
    c = CONVENTIONS[data["convention"]]
    return GradientsRequest(
        problem=Problem(
            inputs=c.data(data["inputs"]),
            targets=_canonical(c, data["targets"]),
            layers=tuple(
                Layer(
                    weights=c.weights(layer["weights"]),
                    biases=None if layer["biases"] is None else layer["biases"].reshape(-1),
                    activation=layer["activation"],
                    kind=layer["type"],
                )
                for layer in data["layers"]
            ),
            loss=data["loss"],
            reduction=data["reduction"],
            l2=data["l2"],
            l2_style=data["l2_style"],
            upstream=_canonical(c, data["upstream"]),
        ),
        convention=c,
        bias_shapes=tuple(
            None if layer["biases"] is None else layer["biases"].shape for layer in data["layers"]
        ),
        include=tuple(dict.fromkeys(include)),
        learning_rate=learning_rate,
        gradient_check=gradient_check,
        encoding=encoding,
    )


def _canonical(c: Convention, array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else c.data(array)


class LayerGradientsSchema(StrictSchema):
    z = Array(ndims=(2,), metadata={"description": "pre-activation, when included"})
    a = Array(ndims=(2,), metadata={"description": "activation (included by default)"})
    dz = Array(ndims=(2,), metadata={"description": "dL/dz, when included"})
    dx = Array(
        ndims=(2,),
        metadata={"description": "dL/d(the layer's input), in the inputs' layout, when included"},
    )
    dW = Array(
        ndims=(2,), required=True, metadata={"description": "in the client's weights layout"}
    )
    db = Array(
        ndims=(1, 2),
        metadata={"description": "in the client's bias shape; absent for a layer without a bias"},
    )


class UpdatedLayerSchema(StrictSchema):
    weights = Array(ndims=(2,), required=True)
    biases = Array(ndims=(1, 2), metadata={"description": "absent for a layer without a bias"})


class LayerCheckSchema(StrictSchema):
    dW = Number(required=True, metadata={"description": "largest relative error over dW"})
    db = Number(
        required=True,
        allow_none=True,
        metadata={"description": "largest relative error over db; null without a bias"},
    )


class GradientCheckSchema(StrictSchema):
    epsilon = Number(required=True, metadata={"description": "the central difference's step"})
    max_relative_error = Number(required=True)
    layers = fields.List(fields.Nested(LayerCheckSchema), required=True)


class GradientsResponseSchema(StrictSchema):
    loss = Number(
        required=True, allow_none=True, metadata={"description": "null when upstream was sent"}
    )
    layers = fields.List(fields.Nested(LayerGradientsSchema), required=True)
    updated_layers = fields.List(fields.Nested(UpdatedLayerSchema))
    gradient_check = fields.Nested(GradientCheckSchema)
