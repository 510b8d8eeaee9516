"""POST /v1/check: a problem plus a student's submission, graded field by field."""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import ValidationError, fields, post_dump, post_load, validate, validates_schema

from service.core.submission import DIAGNOSES, Submission, Tolerance

from .base import StrictSchema
from .fields import MAX_LAYERS, Array, BoundedList, Flag, Number, one_of
from .gradients import GradientsRequest, NetworkProblemSchema, gradients_request
from .layers import LAYER_TYPES

FORMATS = ("json", "gradescope")


class SubmittedLayerSchema(StrictSchema):
    # Any well-formed array is accepted here: a wrong shape is a graded result, not an error.
    z = Array(ndims=(0, 1, 2, 4))
    a = Array(ndims=(0, 1, 2, 4))
    dz = Array(ndims=(0, 1, 2, 4))
    dx = Array(ndims=(0, 1, 2, 4), metadata={"description": "dL/d(the layer's input)"})
    dW = Array(ndims=(0, 1, 2, 4), metadata={"description": "dense"})
    db = Array(ndims=(0, 1, 2, 4), metadata={"description": "dense, with a bias"})
    dgamma = Array(ndims=(0, 1, 2), metadata={"description": "batchnorm, layernorm"})
    dbeta = Array(ndims=(0, 1, 2), metadata={"description": "batchnorm, layernorm"})


class SubmissionSchema(StrictSchema):
    loss = Number(load_default=None)
    layers = BoundedList(
        fields.Nested(SubmittedLayerSchema, allow_none=True),
        MAX_LAYERS,
        "layer entries",
        required=True,
        error_messages={
            "required": (
                "missing: give one entry per layer of the problem, in order, null to skip a "
                # marshmallow formats this message: braces doubled
                'layer (for example "layers": [null, {{"db": [[0.1]]}}]).'
            )
        },
        metadata={"description": "one entry per layer of the problem; null skips a layer"},
    )

    @post_load
    def _to_submission(self, data, **kwargs) -> Submission:
        return Submission(loss=data["loss"], layers=tuple(data["layers"]))


class ToleranceSchema(StrictSchema):
    rtol = Number(load_default=1e-5, validate=validate.Range(min=0))
    atol = Number(load_default=1e-8, validate=validate.Range(min=0))

    @post_load
    def _to_tolerance(self, data, **kwargs) -> Tolerance:
        return Tolerance(**data)


@dataclass(frozen=True)
class CheckRequest:
    gradients: GradientsRequest
    submission: Submission
    tolerance: Tolerance
    strict_shapes: bool
    reveal: bool
    format: str


class CheckRequestSchema(NetworkProblemSchema):
    submission = fields.Nested(SubmissionSchema, required=True)
    tolerance = fields.Nested(ToleranceSchema, load_default=Tolerance)
    strict_shapes = Flag(
        load_default=False,
        metadata={"description": "when false, db of shape (n,) and (1, n) are interchangeable"},
    )
    reveal = Flag(load_default=False, metadata={"description": "add the expected values"})
    format = one_of(
        FORMATS,
        "format",
        load_default="json",
        metadata={"description": "gradescope: a results.json document"},
    )

    @validates_schema(skip_on_field_errors=True)
    def _check_submission(self, data, **kwargs):
        submitted, expected = len(data["submission"].layers), len(data["layers"])
        if submitted != expected:
            raise ValidationError(
                {
                    "submission": {
                        "layers": [
                            f"got {submitted} entries, expected {expected}: one per layer of the "
                            "problem, in order (null to skip a layer)."
                        ]
                    }
                }
            )
        errors = _absent_fields(data)
        if errors:
            raise ValidationError({"submission": errors})
        if data["submission"].loss is None and not any(data["submission"].layers):
            raise ValidationError(
                {"submission": ["nothing to check: submit a loss or at least one layer's arrays."]}
            )

    @post_load
    def _to_request(self, data, **kwargs) -> CheckRequest:
        return CheckRequest(
            gradients=gradients_request(data, include=_computed(data["submission"])),
            submission=data["submission"],
            tolerance=data["tolerance"],
            strict_shapes=data["strict_shapes"],
            reveal=data["reveal"],
            format=data["format"],
        )


def _computed(submission: Submission) -> tuple[str, ...]:
    """z, a and dz are computed anyway; every layer's dx is kept only when one is submitted."""
    dx = any("dx" in (fields or ()) for fields in submission.layers)
    return ("z", "a", "dz", "dx") if dx else ("z", "a", "dz")


def _absent_fields(data: dict) -> dict:
    """Submitted fields the problem has no value for: a loss with upstream, a db without a
    bias, a dW of a batchnorm layer, any gradient of a dropout layer."""
    errors: dict = {}
    if data["upstream"] is not None and data["submission"].loss is not None:
        errors["loss"] = [
            "the problem sends upstream instead of targets and a loss, so it has no loss to "
            "check; leave submission.loss out."
        ]
    layer_errors = {}
    for i, (layer, submitted) in enumerate(zip(data["layers"], data["submission"].layers)):
        has = ("z", "a", "dz", "dx", *LAYER_TYPES[layer["type"]].layouts(layer))
        absent = [name for name in submitted or () if name not in has]
        if absent:
            layer_errors[i] = {name: [_absent_message(i, layer, name)] for name in absent}
    if layer_errors:
        errors["layers"] = layer_errors
    return errors


def _absent_message(i: int, layer: dict, name: str) -> str:
    if name == "db" and layer["type"] == "dense":
        why = "has no bias (its biases were left out)"
    else:
        gradients = [g for g in LAYER_TYPES[layer["type"]].layouts(layer) if g.startswith("d")]
        has = f"its gradients are {', '.join(gradients)}" if gradients else "it has no parameters"
        why = f"is a {layer['type']} layer ({has})"
    return f"layer {i} {why}, so it has no {name} to check; leave submission.layers.{i}.{name} out."


class FieldResultSchema(StrictSchema):
    field = fields.String(required=True, metadata={"example": "layers.1.db"})
    passed = fields.Boolean(required=True)
    expected_shape = fields.List(fields.Integer(), required=True)
    submitted_shape = fields.List(fields.Integer(), required=True)
    max_abs_error = Number(allow_none=True)
    max_rel_error = Number(
        allow_none=True, metadata={"description": "over the entries whose expected value is not 0"}
    )
    # null for a passing field: documented as anyOf the names and null (service.http.openapi)
    diagnosis = fields.String(allow_none=True, metadata={"enum": list(DIAGNOSES)})
    message = fields.String(required=True)
    expected = Array(ndims=(0, 1, 2, 4), metadata={"description": "only with reveal: true"})

    @post_dump
    def _drop_unrevealed(self, data, **kwargs):
        if data.get("expected") is None:
            data.pop("expected", None)
        return data


class CheckResponseSchema(StrictSchema):
    passed = fields.Boolean(required=True, metadata={"description": "every checked field passed"})
    score = Number(required=True, metadata={"description": "correct / checked"})
    checked = fields.Integer(required=True)
    correct = fields.Integer(required=True)
    results = fields.List(fields.Nested(FieldResultSchema), required=True)


class GradescopeTestSchema(StrictSchema):
    name = fields.String(required=True, metadata={"example": "layers.1.db"})
    score = fields.Integer(required=True)
    max_score = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": ["passed", "failed"]})
    output = fields.String(required=True)


class GradescopeResultsSchema(StrictSchema):
    """Gradescope's results.json: one test, worth one point, per checked field."""

    score = fields.Integer(required=True)
    output = fields.String(required=True)
    visibility = fields.String(required=True)
    tests = fields.List(fields.Nested(GradescopeTestSchema), required=True)
