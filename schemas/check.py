"""POST /v1/check: a problem plus a student's submission, graded field by field."""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import ValidationError, fields, post_dump, post_load, validate, validates_schema

from service.core.grading_options import AUTOGRADER_FORMATS, VISIBILITIES, GradingOptions
from service.core.submission import DIAGNOSES, Submission, Tolerance

from .base import StrictSchema
from .fields import MAX_LAYERS, Array, BoundedList, Flag, Number
from .gradients import GradientsRequest, NetworkProblemSchema, gradients_request
from .grading_options import GradingOptionsSchema, grading_options
from .layers import LAYER_TYPES


class SubmittedLayerSchema(StrictSchema):
    # Any well-formed array is accepted here: a wrong shape is a graded result, not an error.
    z = Array(ndims=(0, 1, 2, 4))
    a = Array(ndims=(0, 1, 2, 4))
    dz = Array(ndims=(0, 1, 2, 4))
    dx = Array(ndims=(0, 1, 2, 4), metadata={"description": "dL/d(the layer's input)"})
    dW = Array(ndims=(0, 1, 2, 4), metadata={"description": "dense"})
    db = Array(ndims=(0, 1, 2, 4), metadata={"description": "dense, with a bias"})
    dgamma = Array(ndims=(0, 1, 2, 4), metadata={"description": "batchnorm, layernorm, groupnorm"})
    dbeta = Array(ndims=(0, 1, 2, 4), metadata={"description": "batchnorm, layernorm, groupnorm"})


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


@dataclass(frozen=True)
class BrokenSubmission:
    """A submission that could not be read: marshmallow's messages, nested under its paths.

    Without an autograder format it is refused (422) like any invalid field; with one,
    it is graded as broken (score 0), so the grader still records the attempt.
    """

    messages: dict | list


class GradableSubmission(fields.Nested):
    """The submission, or the BrokenSubmission that says why it cannot be read: the
    request schema decides, once it knows the format, whether that is an error."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as error:
            return BrokenSubmission(error.messages)


class ToleranceSchema(StrictSchema):
    rtol = Number(load_default=1e-5, validate=validate.Range(min=0))
    atol = Number(load_default=1e-8, validate=validate.Range(min=0))

    @post_load
    def _to_tolerance(self, data, **kwargs) -> Tolerance:
        return Tolerance(**data)


@dataclass(frozen=True)
class CheckRequest:
    gradients: GradientsRequest
    submission: Submission | BrokenSubmission
    tolerance: Tolerance
    strict_shapes: bool
    reveal: bool
    format: str
    options: GradingOptions
    student: str | None = None
    assignment: str | None = None


IDENTIFIER_LENGTH = 256
STUDENT = "an opaque id of the student; with GRADIENT_CHECK_QUOTA, checks are counted per student"
ASSIGNMENT = "an opaque id of the assignment; the quota counts per student and assignment"


def identifier(description: str, **kwargs) -> fields.String:
    """An opaque id chosen by the course (a student number, an assignment name)."""
    return fields.String(
        validate=validate.Length(
            min=1, max=IDENTIFIER_LENGTH, error=f"must be 1 to {IDENTIFIER_LENGTH} characters."
        ),
        metadata={"description": description, "maxLength": IDENTIFIER_LENGTH},
        **kwargs,
    )


class CheckOptionsSchema(NetworkProblemSchema, GradingOptionsSchema):
    """The problem and the grading options /v1/check and /v1/check/batch share."""

    tolerance = fields.Nested(ToleranceSchema, load_default=Tolerance)
    strict_shapes = Flag(
        load_default=False,
        metadata={"description": "when false, db of shape (n,) and (1, n) are interchangeable"},
    )
    reveal = Flag(load_default=False, metadata={"description": "add the expected values"})
    assignment = identifier(ASSIGNMENT, load_default=None)


class CheckRequestSchema(CheckOptionsSchema):
    submission = GradableSubmission(SubmissionSchema, required=True)
    student = identifier(STUDENT, load_default=None)

    @validates_schema(skip_on_field_errors=False)
    def _broken_submission_is_an_error_without_an_autograder_format(self, data, **kwargs):
        broken = data.get("submission")
        if isinstance(broken, BrokenSubmission) and data.get("format") not in AUTOGRADER_FORMATS:
            raise ValidationError({"submission": broken.messages})

    @validates_schema(skip_on_field_errors=True)
    def _check_submission(self, data, **kwargs):
        if isinstance(data["submission"], BrokenSubmission):
            return
        errors = submission_errors(data, data["submission"])
        if errors:
            self._refuse(data, errors)

    @staticmethod
    def _refuse(data: dict, messages) -> None:
        """The student's fault: an error, or with an autograder format a broken submission."""
        if data["format"] in AUTOGRADER_FORMATS:
            data["submission"] = BrokenSubmission(messages)
        else:
            raise ValidationError({"submission": messages})

    @post_load
    def _to_request(self, data, **kwargs) -> CheckRequest:
        submission = data["submission"]
        broken = isinstance(submission, BrokenSubmission)
        return CheckRequest(
            gradients=gradients_request(
                data, include=("z", "a", "dz") if broken else computed(submission)
            ),
            submission=submission,
            tolerance=data["tolerance"],
            strict_shapes=data["strict_shapes"],
            reveal=data["reveal"],
            format=data["format"],
            options=grading_options(data),
            student=data["student"],
            assignment=data["assignment"],
        )


def submission_errors(data: dict, submission: Submission) -> dict | list | None:
    """What makes a parsed submission ungradable against the problem ``data``: the wrong
    number of layer entries, fields the problem has no value for, or nothing at all."""
    submitted, expected = len(submission.layers), len(data["layers"])
    if submitted != expected:
        return {
            "layers": [
                f"got {submitted} entries, expected {expected}: one per layer of the "
                "problem, in order (null to skip a layer)."
            ]
        }
    errors = _absent_fields(data, submission)
    if errors:
        return errors
    if submission.loss is None and not any(submission.layers):
        return ["nothing to check: submit a loss or at least one layer's arrays."]
    return None


def computed(*submissions: Submission) -> tuple[str, ...]:
    """z, a and dz are computed anyway; every layer's dx is kept only when one is submitted."""
    dx = any("dx" in (fields or ()) for s in submissions for fields in s.layers)
    return ("z", "a", "dz", "dx") if dx else ("z", "a", "dz")


def _absent_fields(data: dict, submission: Submission) -> dict:
    """Submitted fields the problem has no value for: a loss with upstream, a db without a
    bias, a dW of a batchnorm layer, any gradient of a dropout layer."""
    errors: dict = {}
    if data["upstream"] is not None and submission.loss is not None:
        errors["loss"] = [
            "the problem sends upstream instead of targets and a loss, so it has no loss to "
            "check; leave submission.loss out."
        ]
    layer_errors = {}
    for i, (layer, submitted) in enumerate(zip(data["layers"], submission.layers)):
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
    mismatched = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "how many entries are outside the tolerance (0 for a passing field); "
            "null when the shapes differ (nothing is compared entry by entry) or the field's "
            "visibility withholds it"
        },
    )
    entries = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "how many entries were compared (mismatched is out of these; 1 for "
            "the loss); null as mismatched"
        },
    )
    worst_index = fields.List(
        fields.Integer(),
        required=True,
        allow_none=True,
        metadata={
            "description": "the index, in the submitted array's own shape (the client's "
            "layout), of the mismatched entry with the largest absolute error; [] for the "
            "loss; null when no entry is mismatched (a passing field), the shapes differ, or "
            "the field is withheld",
            "example": [1, 2],
        },
    )
    exact = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={
            "description": "every entry the same float64 as the expected one (0.0 and -0.0 "
            "alike); false when the shapes differ; null when the field is withheld"
        },
    )
    submitted_value = Number(
        metadata={"description": "only with reveal: true and a worst_index: the entry sent there"}
    )
    expected_value = Number(
        metadata={"description": "only with reveal: true and a worst_index: the right entry"}
    )
    points = Number(metadata={"description": "the points this field earned"})
    max_points = Number(metadata={"description": "its points (1 unless points names it)"})
    credit = fields.String(
        metadata={
            "enum": ["full", "propagated", "none"],
            "description": "propagated: wrong only because of a later layer's mistake, and "
            'credited propagated_credit of its points (partial_credit "propagated")',
        }
    )
    visibility = fields.String(metadata={"enum": list(VISIBILITIES)})

    @post_dump
    def _drop_unrevealed(self, data, **kwargs):
        for name in ("expected", "submitted_value", "expected_value"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class CheckResponseSchema(StrictSchema):
    passed = fields.Boolean(required=True, metadata={"description": "every checked field passed"})
    score = Number(
        required=True,
        metadata={"description": "points / max_points: correct / checked with the default points"},
    )
    checked = fields.Integer(required=True)
    correct = fields.Integer(required=True)
    results = fields.List(fields.Nested(FieldResultSchema), required=True)
    points = Number(metadata={"description": "the points earned"})
    max_points = Number(metadata={"description": "the points of every checked field"})
    credited_as_propagated = fields.List(
        fields.String(),
        metadata={"description": 'the fields credited with partial_credit "propagated"'},
    )
