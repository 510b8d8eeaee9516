"""POST /v1/neuron: one neuron, every chain-rule term of dL/db."""

from __future__ import annotations

from marshmallow import (
    ValidationError,
    fields,
    post_dump,
    post_load,
    validate,
    validates_schema,
)

from service.core import ALIASES, ELEMENTWISE, LOSSES, NeuronProblem

from .base import StrictSchema
from .fields import Array, Number, Whole, one_of, positive_number, shape_text

NEURON_ACTIVATIONS = (*ELEMENTWISE, *ALIASES)
NEURON_LOSSES = tuple(name for name, loss in LOSSES.items() if loss.mean_over_elements)
MAX_CURVE_POINTS = 401
MAX_STEPS = 200


class NeuronRequestSchema(StrictSchema):
    x = Array(ndims=(0, 1), required=True, metadata={"description": "a number or a list"})
    w = Array(ndims=(0, 1), required=True, metadata={"description": "same shape as x"})
    b = Number(required=True)
    y = Number(required=True)
    activation = one_of(NEURON_ACTIVATIONS, "activation", required=True)
    loss = one_of(NEURON_LOSSES, "loss", required=True)
    learning_rate = positive_number(load_default=0.1)
    curve_points = Whole(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_CURVE_POINTS),
        metadata={"description": "also return the loss at this many values of b around b"},
    )
    curve_span = positive_number(
        load_default=2.0, metadata={"description": "the curve runs from b - span to b + span"}
    )
    steps = Whole(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_STEPS),
        metadata={"description": "also return this many gradient-descent steps in b"},
    )

    @validates_schema(skip_on_field_errors=True)
    def _check(self, data, **kwargs):
        if data["x"].shape != data["w"].shape:
            raise ValidationError(
                {
                    "w": [
                        f"got shape {shape_text(data['w'].shape)}, expected "
                        f"{shape_text(data['x'].shape)}, the shape of x: one weight per input."
                    ]
                }
            )
        activation = ALIASES.get(data["activation"], data["activation"])
        if data["loss"] == "bce":
            if activation != "sigmoid":
                raise ValidationError(
                    {
                        "loss": [
                            f"bce needs a sigmoid output, but the activation is {activation!r}: "
                            "its output must lie in (0, 1). Use activation 'sigmoid' or loss 'mse'."
                        ]
                    }
                )
            if not 0.0 <= data["y"] <= 1.0:
                raise ValidationError({"y": [f"bce needs y in [0, 1]; got {data['y']:g}."]})
        if data["loss"] == "hinge" and data["y"] not in (-1.0, 1.0):
            raise ValidationError(
                {"y": [f"hinge needs y = -1 or +1; got {data['y']:g}. For a 0/1 y send 2y - 1."]}
            )

    @post_load
    def _to_problem(self, data, **kwargs) -> NeuronProblem:
        return NeuronProblem(**data)


class CurveSchema(StrictSchema):
    b = Array(ndims=(1,), required=True)
    loss = Array(ndims=(1,), required=True)


class NeuronResponseSchema(StrictSchema):
    z = Number(required=True, metadata={"description": "w . x + b"})
    a = Number(required=True, metadata={"description": "f(z)"})
    loss = Number(required=True)
    dL_da = Number(required=True)
    da_dz = Number(required=True, metadata={"description": "f'(z)"})
    dz_db = Number(required=True, metadata={"description": "always 1"})
    dL_dz = Number(required=True)
    dL_db = Number(required=True, metadata={"description": "dL/da * da/dz * dz/db"})
    dL_dw = Array(ndims=(0, 1), required=True, metadata={"description": "dL/dz * x, shape of w"})
    b_next = Number(required=True, metadata={"description": "b - learning_rate * dL_db"})
    w_next = Array(ndims=(0, 1), required=True)
    loss_curve = fields.Nested(CurveSchema, metadata={"description": "with curve_points"})
    trajectory = fields.Nested(CurveSchema, metadata={"description": "with steps; starts at b"})
    numerical_dL_db = Number(
        required=True, metadata={"description": "central finite difference of the loss in b"}
    )

    @post_dump
    def _drop_unrequested(self, data, **kwargs):
        for name in ("loss_curve", "trajectory"):
            if data.get(name) is None:
                data.pop(name, None)
        return data
