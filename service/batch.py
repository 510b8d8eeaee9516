"""Grading a whole class: one Grader for the problem, every submission through it in order.

The reference pass and each mistaken pass are computed once, by the first submission
that needs them (the Grader remembers them), so a class of 1,000 costs one problem's
passes and 1,000 comparisons, not 1,000 problems.  Each entry's result is what
/v1/check answers for that submission in the format asked (service.grading_formats),
plus its student; a submission that earned nothing without being graded (broken, or
over its student's quota) is a grade of 0 that says why, and never fails the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from schemas.batch import Entry
from service.core.budget import Deadline
from service.core.grading_options import GradingOptions, UngradableSubmission
from service.grading import Grader, Report
from service.grading_formats import junit_testsuites, render

from .check_results import broken_errors, render_ungradable
from .operations import metrics

#: (student, assignment) -> None when the check may run, else seconds until the next may
Admit = Callable[[str, str | None], int | None]


@dataclass(frozen=True)
class Refused:
    """A submission that earned nothing without being graded, and why: as the autograder
    formats show it, and as the JSON entry's detail, errors and retry_after say it."""

    ungradable: UngradableSubmission
    detail: str
    errors: dict[str, list[str]] | None = None
    retry_after: int | None = None


@dataclass(frozen=True)
class Outcome:
    student: str
    result: Report | Refused
    seconds: float


def grade_class(
    grader: Grader,
    entries: Iterable[Entry],
    deadline: Deadline,
    admit: Admit | None = None,
    refusal: Callable[[int], str] = str,
) -> list[Outcome]:
    """One outcome per entry, in order: graded, broken (naming the problem), or over its
    student's quota (saying when the next check is allowed)."""
    outcomes = []
    for entry in entries:
        deadline.check()
        started = time.perf_counter()
        if entry.submission is None:
            errors, detail = broken_errors(entry.errors)
            result: Report | Refused = Refused(UngradableSubmission(errors), detail, errors)
        elif admit is not None and (retry_after := admit(entry.student, entry.assignment)):
            message = refusal(retry_after)
            over = UngradableSubmission(
                {"student": [message]}, summary=message, test_name="quota", tag="over_quota"
            )
            result = Refused(over, message, retry_after=retry_after)
        else:
            result = grader.grade(entry.submission)
            metrics.count_diagnoses(r.diagnosis for r in result.results if r.diagnosis)
        outcomes.append(Outcome(entry.student, result, time.perf_counter() - started))
    return outcomes


def render_class(outcomes: list[Outcome], options: GradingOptions) -> tuple[dict | str, str]:
    """The class's answer: {"results": [...]} in a JSON format, one testsuites for junit."""
    if options.format == "junit":
        entries = [(o.student, _gradable(o.result), o.seconds) for o in outcomes]
        return junit_testsuites(entries, options), "application/xml"
    return {"results": [_entry(outcome, options) for outcome in outcomes]}, "application/json"


def _gradable(result: Report | Refused) -> Report | UngradableSubmission:
    return result.ungradable if isinstance(result, Refused) else result


def _entry(outcome: Outcome, options: GradingOptions) -> dict:
    result = outcome.result
    if isinstance(result, Refused) and options.format == "json":
        body = render_ungradable(result.detail, result.errors, result.retry_after)
    else:
        body, _ = render(_gradable(result), options, outcome.seconds)
    return {"student": outcome.student, **body}
