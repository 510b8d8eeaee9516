"""A graded submission written as /v1/check answers it, for /v1/check and each batch entry.

One function writes a report (``render_report``) and one a submission that earned
nothing without being graded (``render_ungradable``: broken, or over its quota), so
that /v1/check and /v1/check/batch can never drift apart.  Issue 16's output formats
(gradescope, prairielearn, junit, always-gradable outcomes) replace both with the
rendering module's ``render(report, options)``.
"""

from __future__ import annotations

from schemas import CheckResponseSchema, GradescopeResultsSchema
from service.core.request_costs import BROKEN_ERRORS
from service.grading import Report, gradescope_results
from service.http.errors import flatten_messages

CHECK_RESPONSE, GRADESCOPE_RESULTS = CheckResponseSchema(), GradescopeResultsSchema()


def render_report(report: Report, format: str) -> dict:
    """/v1/check's answer for a graded report: its JSON, or Gradescope's results.json."""
    if format == "gradescope":
        return GRADESCOPE_RESULTS.dump(gradescope_results(report))
    return CHECK_RESPONSE.dump(report)


def broken_errors(messages: dict | list) -> tuple[dict[str, list[str]], str]:
    """A broken submission's messages by field path, as a 422 of /v1/check names them
    (``submission.layers.1.db``), at most BROKEN_ERRORS paths; and the detail that says so."""
    errors, omitted = flatten_messages({"submission": messages}, limit=BROKEN_ERRORS)
    path, first = next(iter(errors.items()))
    more = len(errors) - 1 + omitted
    tail = f" (and {more:,} more field(s); see errors)" if more else ""
    return errors, f"the submission could not be graded: {path}: {first[0]}{tail}"


def render_ungradable(
    format: str,
    detail: str,
    errors: dict[str, list[str]] | None = None,
    retry_after: int | None = None,
) -> dict:
    """A submission that earned nothing: score 0, and ``detail`` saying why."""
    if format == "gradescope":
        named = errors or {"submission": [detail]}
        return {
            "score": 0,
            "output": detail,
            "visibility": "visible",
            "tests": [
                {
                    "name": path,
                    "score": 0,
                    "max_score": 1,
                    "status": "failed",
                    "output": " ".join(messages),
                }
                for path, messages in named.items()
            ],
            **({"retry_after": retry_after} if retry_after is not None else {}),
        }
    answer = {
        "passed": False,
        "score": 0.0,
        "checked": 0,
        "correct": 0,
        "results": [],
        "detail": detail,
    }
    if errors:
        answer["errors"] = errors
    if retry_after is not None:
        answer["retry_after"] = retry_after
    return answer
