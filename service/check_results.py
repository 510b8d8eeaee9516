"""A /v1/check/batch entry that earned nothing without being graded, in the JSON format.

/v1/check refuses a broken submission with a 422 in the JSON format; a batch cannot, so
its entry carries what that 422 would have said: ``detail``, ``errors`` by path (at most
BROKEN_ERRORS), and for a student over the quota ``retry_after``.
"""

from __future__ import annotations

from service.core.request_costs import BROKEN_ERRORS
from service.http.errors import flatten_messages


def broken_errors(messages: dict | list) -> tuple[dict[str, list[str]], str]:
    """A broken submission's messages by field path, as a 422 of /v1/check names them
    (``submission.layers.1.db``), at most BROKEN_ERRORS paths; and the detail that says so."""
    errors, omitted = flatten_messages({"submission": messages}, limit=BROKEN_ERRORS)
    path, first = next(iter(errors.items()))
    more = len(errors) - 1 + omitted
    tail = f" (and {more:,} more field(s); see errors)" if more else ""
    return errors, f"the submission could not be graded: {path}: {first[0]}{tail}"


def render_ungradable(
    detail: str,
    errors: dict[str, list[str]] | None = None,
    retry_after: int | None = None,
) -> dict:
    """A batch entry that earned nothing, in the JSON format: score 0, ``detail`` saying why
    (the autograder formats show it as their own document: service.grading_formats)."""
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
