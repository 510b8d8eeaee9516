"""The grading options of /v1/check (and of each submission of a batch): the answer's format,
points, partial credit and visibility per field.

A mixin: the request schema that takes them lists GradingOptionsSchema among its bases,
and builds its GradingOptions with ``grading_options(data)``.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from service.core.grading_options import FORMATS, PARTIAL_CREDIT, VISIBILITIES, GradingOptions

from .bounded import quoted
from .fields import Number, one_of

#: Entries of ``points`` or ``visibility``: a name or path per field of every layer, and more.
MAX_WEIGHTS = 4096
#: The field names ``points`` and ``visibility`` may name, besides a path: the loss and
#: every field of schemas.check.SubmittedLayerSchema (tests/test_grading_formats.py checks).
GRADED_NAMES = ("loss", "z", "a", "dz", "dx", "dW", "db", "dgamma", "dbeta")


class PerField(fields.Dict):
    """A value per field name (``dW``) or path (``layers.1.db``), at most MAX_WEIGHTS of them;
    the paths' layer numbers are checked against the problem by the request schema."""

    def __init__(self, values: fields.Field, **kwargs):
        metadata = {
            "maxProperties": MAX_WEIGHTS,
            "example": {"dW": 2, "layers.1.db": 3},
            **kwargs.pop("metadata", {}),
        }
        super().__init__(keys=fields.String(), values=values, metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict) and len(value) > MAX_WEIGHTS:
            raise ValidationError(
                f"got {len(value):,} entries; at most {MAX_WEIGHTS:,} are accepted."
            )
        result = super()._deserialize(value, attr, data, **kwargs)
        defects = ((key, _key_defect(key)) for key in result)
        errors = {key: [defect] for key, defect in defects if defect}
        if errors:
            raise ValidationError(errors)  # bounded by the problem document's own cap
        return result


def _key_defect(key: str) -> str | None:
    if key in GRADED_NAMES:
        return None
    parts = key.split(".")
    if (
        len(parts) == 3
        and parts[0] == "layers"
        and parts[1].isascii()
        and parts[1].isdigit()
        and parts[2] in GRADED_NAMES[1:]
    ):
        return None
    return (
        f"unknown field name or path {quoted(key)}: expected a name ({', '.join(GRADED_NAMES)}) "
        'or a path such as "layers.1.db" (the layer\'s number from 0) or "loss".'
    )


class GradingOptionsSchema(Schema):
    """The options' fields and their check against the problem's layers."""

    format = one_of(
        FORMATS,
        "format",
        load_default="json",
        metadata={
            "description": "json: this service's own answer; gradescope, prairielearn: that "
            "grader's results.json; junit: JUnit XML (application/xml). With gradescope, "
            "prairielearn or junit a broken submission is answered as a grade of 0, not a 422."
        },
    )
    points = PerField(
        Number(validate=validate.Range(min=0)),
        load_default=None,
        metadata={
            "description": "points per field name or path (a path beats a name); 1 each by "
            "default. The score is the fraction of the points earned."
        },
    )
    partial_credit = one_of(
        PARTIAL_CREDIT,
        "partial_credit",
        load_default=None,
        metadata={
            "description": "none (the default) or propagated: a field wrong only because of a "
            "mistake made in a later layer earns propagated_credit of its points"
        },
    )
    propagated_credit = Number(
        load_default=None,
        validate=validate.Range(min=0, max=1),
        metadata={
            "description": 'the fraction earned with partial_credit "propagated"; 0.5 by default'
        },
    )
    visibility = PerField(
        one_of(VISIBILITIES, "visibility"),
        load_default=None,
        metadata={
            "description": "Gradescope's visibility per field name or path; visible by default. "
            "A hidden field counts in the score, but its message is withheld in every format "
            "(after_due_date and after_published too, where the format cannot delay it).",
            "example": {"layers.0.dW": "hidden"},
        },
    )

    @validates_schema(skip_on_field_errors=True)
    def _check_paths(self, data, **kwargs):
        layers = len(data["layers"])
        errors = {}
        for option in ("points", "visibility"):
            for key in data[option] or ():
                parts = key.split(".")
                # a number of 5,000 digits is out of range too, without converting it
                if len(parts) == 3 and (len(parts[1]) > 6 or int(parts[1]) >= layers):
                    errors.setdefault(option, {})[key] = [
                        f"{quoted(key)} names a layer past the last: the problem has {layers} "
                        f"layer(s), numbered from 0."
                    ]
        if errors:
            raise ValidationError(errors)


SCORING = ("points", "partial_credit", "propagated_credit", "visibility")


def grading_options(data: dict) -> GradingOptions:
    """The scoring options; ``detailed`` when any was sent, so that the JSON answer of a
    request without them stays what it always was."""
    sent = {name: data[name] for name in SCORING if data[name] is not None}
    return GradingOptions(format=data["format"], detailed=bool(sent), **sent)
