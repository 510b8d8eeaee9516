"""A graded report written as the document a grader reads: this service's JSON, Gradescope's
results.json, PrairieLearn's results.json, or JUnit XML.

One entry point, ``render(report, options)``, for /v1/check and every entry of a batch.
Scoring lives here too, since every format shows it: each field is worth its points
(``options.points``), earns them when it passes, and with partial credit "propagated" earns
a fraction when it is wrong only because of a mistake made in a later layer.  A field whose
visibility withholds it still counts, but its message never reaches student-facing text.
A submission that could not be read (UngradableSubmission) is a grade of 0 that says why.
"""

from __future__ import annotations

from service.core.grading_options import GradingOptions, UngradableSubmission
from service.grading import Report

from .gradescope import Gradescope
from .junit import JUnit, junit_testsuites
from .native import NativeJson
from .prairielearn import PrairieLearn
from .scoring import WITHHELD, score

_WRITERS = {
    "json": NativeJson,
    "gradescope": Gradescope,
    "prairielearn": PrairieLearn,
    "junit": JUnit,
}


def render(
    report: Report | UngradableSubmission,
    options: GradingOptions,
    execution_time: float = 0.0,
) -> tuple[dict | str, str]:
    """The answer in ``options.format``: (a JSON document, or XML text; its media type)."""
    writer = _WRITERS[options.format]
    if isinstance(report, UngradableSubmission):
        return writer.ungradable(report, options, execution_time)
    return writer.graded(report, score(report, options), options, execution_time)


__all__ = ["WITHHELD", "junit_testsuites", "render", "score"]
