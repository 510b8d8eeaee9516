"""POST /v1/check/batch: one problem, a whole class's submissions, each graded on its own.

A submission the student broke (a ragged array, a string, the wrong number of layer
entries, an unknown field) is a grading outcome, not an error of the request: its
entry carries the messages /v1/check would have answered in a 422, and the batch goes
on.  What the instructor's side sends (the problem, the options, each entry's student
id) is validated as strictly as /v1/check's.
"""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import fields, post_dump, post_load

from service.core.grading_options import GradingOptions
from service.core.limits import MAX_BATCH_SUBMISSIONS
from service.core.submission import Submission, Tolerance

from .base import StrictSchema
from .check import (
    ASSIGNMENT,
    STUDENT,
    BrokenSubmission,
    CheckOptionsSchema,
    CheckResponseSchema,
    GradableSubmission,
    SubmissionSchema,
    computed,
    identifier,
    submission_errors,
)
from .fields import BoundedList
from .gradients import GradientsRequest, gradients_request
from .grading_formats import GradescopeResultsSchema, PrairieLearnResultsSchema
from .grading_options import grading_options


@dataclass(frozen=True)
class Entry:
    """One student's submission: parsed, or the messages that say why it could not be."""

    student: str
    assignment: str | None
    submission: Submission | None
    #: marshmallow's nested messages, as a 422 of /v1/check would carry them under "submission"
    errors: dict | list | None = None


@dataclass(frozen=True)
class CheckBatchRequest:
    gradients: GradientsRequest
    entries: tuple[Entry, ...]
    tolerance: Tolerance
    strict_shapes: bool
    reveal: bool
    format: str
    options: GradingOptions


class Gradable(GradableSubmission):
    """A batch entry's submission, documented as any value: whatever a student sent is
    graded, broken or not (service.http.openapi.gradable_to_openapi)."""


class BatchEntrySchema(StrictSchema):
    student = identifier(STUDENT, required=True)
    assignment = identifier(ASSIGNMENT + " (default: the batch's assignment)", load_default=None)
    # documented as any value (service.http.openapi.gradable_to_openapi)
    submission = Gradable(SubmissionSchema, required=True)


class CheckBatchRequestSchema(CheckOptionsSchema):
    submissions = BoundedList(
        fields.Nested(BatchEntrySchema),
        MAX_BATCH_SUBMISSIONS,
        "submissions",
        required=True,
        metadata={
            "description": "one entry per student, answered in this order "
            "(at most GRADIENT_MAX_BATCH_SUBMISSIONS)"
        },
    )

    @post_load
    def _to_request(self, data, **kwargs) -> CheckBatchRequest:
        entries = tuple(_entry(data, entry) for entry in data["submissions"])
        gradable = [entry.submission for entry in entries if entry.submission is not None]
        return CheckBatchRequest(
            gradients=gradients_request(data, include=computed(*gradable)),
            entries=entries,
            tolerance=data["tolerance"],
            strict_shapes=data["strict_shapes"],
            reveal=data["reveal"],
            format=data["format"],
            options=grading_options(data),
        )


def _entry(data: dict, entry: dict) -> Entry:
    assignment = entry["assignment"] or data["assignment"]
    submission = entry["submission"]
    if isinstance(submission, BrokenSubmission):
        return Entry(entry["student"], assignment, None, submission.messages)
    errors = submission_errors(data, submission)
    if errors:
        return Entry(entry["student"], assignment, None, errors)
    return Entry(entry["student"], assignment, submission)


class Ungradable:
    """What a broken or refused entry adds to its result: why it earned nothing."""

    detail = fields.String(
        metadata={"description": "why this submission was not graded (broken, or over quota)"}
    )
    errors = fields.Dict(
        keys=fields.String(metadata={"example": "submission.layers.1.db"}),
        values=fields.List(fields.String()),
        metadata={"description": "a broken submission: field path -> messages, as in a 422"},
    )
    retry_after = fields.Integer(
        metadata={"description": "over the quota: seconds until this student's next check"}
    )

    @post_dump
    def _drop_absent(self, data, **kwargs):
        for name in ("detail", "errors", "retry_after"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class BatchCheckResultSchema(Ungradable, CheckResponseSchema):
    """/v1/check's answer for one submission, and its student."""

    student = fields.String(required=True)


class BatchGradescopeResultSchema(Ungradable, GradescopeResultsSchema):
    """/v1/check's results.json for one submission (format=gradescope), and its student."""

    student = fields.String(required=True)


class BatchPrairieLearnResultSchema(PrairieLearnResultsSchema):
    """/v1/check's results.json for one submission (format=prairielearn), and its student."""

    student = fields.String(required=True)
