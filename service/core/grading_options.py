"""How a graded submission is scored and shown: the options of /v1/check beside the grading.

The vocabulary shared by the check schema (which builds a GradingOptions from
the request) and the renderer (service.grading_formats, which scores and writes
the report in the format asked): here, in the core, so the schemas never import
the renderer.  Also the record of a submission that could not be graded at all
(UngradableSubmission), which an autograder format answers as a grade of 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: The answer's formats: the service's own JSON, and the documents graders read.
FORMATS = ("json", "gradescope", "prairielearn", "junit")
#: The formats in which a broken submission is a grade of 0 rather than a 422.
AUTOGRADER_FORMATS = ("gradescope", "prairielearn", "junit")
PARTIAL_CREDIT = ("none", "propagated")
#: Gradescope's visibility values, used for every format.
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
#: Where a format has no way to delay a result, these are withheld like ``hidden``.
DELAYED = ("after_due_date", "after_published")


@dataclass(frozen=True)
class GradingOptions:
    format: str = "json"
    #: points per field name ("dW", "loss") or path ("layers.1.db"); a path beats a name
    points: Mapping[str, float] = field(default_factory=dict)
    partial_credit: str = "none"
    #: the fraction a field earns when it is wrong only through a later layer's mistake
    propagated_credit: float = 0.5
    #: Gradescope visibility per field name or path; "visible" when not named
    visibility: Mapping[str, str] = field(default_factory=dict)
    #: the JSON answer carries points, credit and visibility (any of the above was asked for)
    detailed: bool = False

    def points_for(self, path: str) -> float:
        return _lookup(self.points, path, 1.0)

    def visibility_for(self, path: str) -> str:
        return _lookup(self.visibility, path, "visible")

    @property
    def autograder(self) -> bool:
        return self.format in AUTOGRADER_FORMATS


def _lookup(table: Mapping, path: str, default):
    if path in table:
        return table[path]
    return table.get(path.rsplit(".", 1)[-1], default)


@dataclass(frozen=True)
class UngradableSubmission:
    """A submission that could not be graded: what is wrong with it, per path; a grade of 0.

    ``errors`` maps each path (``submission.layers.0.dW``) to its messages, bounded
    like a problem document's (service.http.errors.flatten_messages).
    """

    errors: Mapping[str, list[str]]
    #: how many further paths were wrong but left out
    omitted: int = 0
    #: what the student reads first; another cause (an exhausted quota) says its own
    summary: str = "Your submission could not be graded: fix its format and submit again."
    #: the failed test's name (Gradescope, JUnit) and its tag or failure type
    test_name: str = "submission format"
    tag: str = "format_error"
    #: over a quota: seconds until the student's next check may run
    retry_after: int | None = None

    @classmethod
    def over_quota(cls, message: str, retry_after: int) -> UngradableSubmission:
        """A check refused by its student's quota: a grade of 0 saying when the next may run."""
        return cls(
            {"student": [message]},
            summary=message,
            test_name="quota",
            tag="over_quota",
            retry_after=retry_after,
        )

    @property
    def detail(self) -> str:
        """One line saying why: the first problem of a broken submission, or the summary."""
        if self.tag != "format_error" or not self.errors:
            return self.summary
        path, messages = next(iter(self.errors.items()))
        more = len(self.errors) - 1 + self.omitted
        tail = f" (and {more:,} more field(s); see errors)" if more else ""
        return f"the submission could not be graded: {path}: {messages[0]}{tail}"
