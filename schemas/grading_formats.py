"""The documents graders read, as /v1/check answers them with ``format``: for the OpenAPI
document (service.grading_formats writes them; tests validate them against these).

Gradescope's results.json (its autograder specification) and PrairieLearn's external
grader results.json.  JUnit XML is documented as a string of application/xml.
"""

from __future__ import annotations

from marshmallow import fields

from service.core.grading_options import VISIBILITIES
from service.core.submission import DIAGNOSES

from .base import StrictSchema
from .fields import Number

_VISIBILITY = {"enum": list(VISIBILITIES)}


class GradescopeTestSchema(StrictSchema):
    name = fields.String(required=True, metadata={"example": "layers.1.db"})
    number = fields.String(
        metadata={
            "example": "2.3",
            "description": "<layer + 1>.<k>, k counting the layer's checked fields from 1; "
            "the loss is 0.1",
        }
    )
    score = Number(required=True)
    max_score = Number(required=True)
    status = fields.String(required=True, metadata={"enum": ["passed", "failed"]})
    output = fields.String(required=True, metadata={"description": "Markdown"})
    output_format = fields.String(required=True, metadata={"enum": ["md"]})
    tags = fields.List(
        fields.String(metadata={"enum": [*DIAGNOSES, "format_error", "over_quota"]}),
        required=True,
        metadata={"description": "the diagnosis, for a failed field"},
    )
    visibility = fields.String(required=True, metadata=_VISIBILITY)


class GradescopeResultsSchema(StrictSchema):
    """Gradescope's results.json: one test per checked field, worth its points."""

    score = Number(required=True, metadata={"description": "the points earned"})
    execution_time = Number(required=True, metadata={"description": "seconds"})
    output = fields.String(required=True, metadata={"description": "Markdown, for the student"})
    output_format = fields.String(required=True, metadata={"enum": ["md"]})
    visibility = fields.String(required=True, metadata=_VISIBILITY)
    stdout_visibility = fields.String(required=True, metadata=_VISIBILITY)
    extra_data = fields.Dict(required=True)
    tests = fields.List(fields.Nested(GradescopeTestSchema), required=True)


class PrairieLearnTestSchema(StrictSchema):
    name = fields.String(required=True, metadata={"example": "layers.1.db"})
    description = fields.String(required=True)
    points = Number(required=True)
    max_points = Number(required=True)
    message = fields.String(required=True)
    output = fields.String(required=True)


class PrairieLearnResultsSchema(StrictSchema):
    """PrairieLearn's external grader results.json."""

    gradable = fields.Boolean(
        required=True, metadata={"description": "false: the submission could not be read"}
    )
    score = Number(required=True, metadata={"description": "from 0 to 1"})
    message = fields.String(required=True)
    output = fields.String(required=True)
    format_errors = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "what is wrong with an ungradable submission, by path"},
    )
    tests = fields.List(fields.Nested(PrairieLearnTestSchema), required=True)
