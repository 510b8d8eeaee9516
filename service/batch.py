"""Grading a whole class: one Grader for the problem, every submission through it in order.

The reference pass is computed once; the catalogue of mistaken passes is walked once for
the whole class after every submission has been compared with the reference, each pass
compared with every submission's fields still unexplained and freed before the next
(Grader.together), so a class of 1,000 costs one problem's passes, one of them alive at a
time, and 1,000 comparisons, not 1,000 problems.  Each entry's result is what
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
from service.core.request_costs import BROKEN_ERRORS
from service.grading import Grader, Report
from service.grading_formats import junit_testsuites, render
from service.http.errors import flatten_messages

from .operations import metrics

#: (student, assignment) -> None when the check may run, else seconds until the next may
Admit = Callable[[str, str | None], int | None]


@dataclass(frozen=True)
class Outcome:
    student: str
    result: Report | UngradableSubmission
    seconds: float


def grade_class(
    grader: Grader,
    entries: Iterable[Entry],
    deadline: Deadline,
    admit: Admit | None = None,
    refusal: Callable[[int], str] = str,
) -> list[Outcome]:
    """One outcome per entry, in order: graded, broken (naming at most BROKEN_ERRORS of its
    problems), or over its student's quota (saying when the next check is allowed).  A
    graded entry's seconds are its own comparisons and its share of the catalogue's walk."""
    graded: list[tuple[str, Report | UngradableSubmission, float]] = []
    with grader.together():
        for entry in entries:
            deadline.check()
            started = time.perf_counter()
            if entry.submission is None:
                errors, omitted = flatten_messages(
                    {"submission": entry.errors}, limit=BROKEN_ERRORS
                )
                result: Report | UngradableSubmission = UngradableSubmission(errors, omitted)
            elif admit is not None and (retry_after := admit(entry.student, entry.assignment)):
                result = UngradableSubmission.over_quota(refusal(retry_after), retry_after)
            else:
                result = grader.grade(entry.submission)  # complete once the block ends
            graded.append((entry.student, result, time.perf_counter() - started))
        walk_started = time.perf_counter()
    reports = [result for _, result, _ in graded if isinstance(result, Report)]
    share = (time.perf_counter() - walk_started) / max(len(reports), 1)
    for report in reports:
        metrics.count_diagnoses(r.diagnosis for r in report.results if r.diagnosis)
    return [
        Outcome(student, result, seconds + (share if isinstance(result, Report) else 0.0))
        for student, result, seconds in graded
    ]


def render_class(outcomes: list[Outcome], options: GradingOptions) -> tuple[dict | str, str]:
    """The class's answer: {"results": [...]} in a JSON format, one testsuites for junit."""
    if options.format == "junit":
        entries = [(o.student, o.result, o.seconds) for o in outcomes]
        return junit_testsuites(entries, options), "application/xml"
    results = [{"student": o.student, **render(o.result, options, o.seconds)[0]} for o in outcomes]
    return {"results": results}, "application/json"
