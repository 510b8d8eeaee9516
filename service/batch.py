"""Grading a whole class: one Grader for the problem, every submission through it in order.

The reference pass and each mistaken pass are computed once, by the first submission
that needs them (the Grader remembers them), so a class of 1,000 costs one problem's
passes and 1,000 comparisons, not 1,000 problems.  Each entry's result is exactly what
/v1/check answers for that submission (service.check_results), plus its student.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from schemas.batch import Entry
from service.core.budget import Deadline
from service.grading import Grader

from .check_results import broken_errors, render_report, render_ungradable
from .operations import metrics

#: (student, assignment) -> None when the check may run, else seconds until the next may
Admit = Callable[[str, str | None], int | None]


def grade_class(
    grader: Grader,
    entries: Iterable[Entry],
    format: str,
    deadline: Deadline,
    admit: Admit | None = None,
    refusal: Callable[[int], str] = str,
) -> list[dict]:
    """One result per entry, in order: graded, broken (score 0, naming the problem), or
    over its student's quota (score 0, saying when the next check is allowed)."""
    results = []
    for entry in entries:
        deadline.check()
        if entry.submission is None:
            errors, detail = broken_errors(entry.errors)
            result = render_ungradable(format, detail, errors=errors)
        elif admit is not None and (retry_after := admit(entry.student, entry.assignment)):
            result = render_ungradable(format, refusal(retry_after), retry_after=retry_after)
        else:
            report = grader.grade(entry.submission)
            metrics.count_diagnoses(r.diagnosis for r in report.results if r.diagnosis)
            result = render_report(report, format)
        results.append({"student": entry.student, **result})
    return results
