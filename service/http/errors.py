"""Every error becomes one shape: RFC 9457 problem+json, never HTML, never a trace.

Three sources reach this module: HTTP errors (raised by Werkzeug, webargs or
the body reader), validation errors (webargs' 422 carrying marshmallow's
nested messages), and the core's own refusals (limits, overflow).  Each is
turned into ``{type, title, status, detail[, errors, errors_omitted]}`` here
and nowhere else, bounded whatever the input: at most MAX_ERRORS entries (the
rest counted in ``errors_omitted``), each path and message cut with a marker.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from itertools import islice

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from service.core import CoreError, LimitExceeded, NonFiniteResult
from service.operations import metrics

from .json import encode
from .requestlog import endpoint_label, request_id

PROBLEM_MIMETYPE = "application/problem+json"
PROBLEM_TYPES = {
    "validation": "urn:gradient-service:problem:validation",
    LimitExceeded: "urn:gradient-service:problem:limit-exceeded",
    NonFiniteResult: "urn:gradient-service:problem:non-finite-result",
}

log = logging.getLogger(__name__)


#: Entries of a problem document's ``errors`` map; the rest are counted in ``errors_omitted``.
MAX_ERRORS = 50
#: Characters of one path segment: an unknown key is the client's own text.
PATH_SEGMENT_LIMIT = 200
#: Characters of one message or ``detail``: a net under the schemas' own caps
#: (schemas.bounded quotes at most 200 characters of input), never reached by them.
MESSAGE_LIMIT = 2000


def problem(
    status: int,
    detail: str,
    *,
    errors: dict[str, list[str]] | None = None,
    errors_omitted: int = 0,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "type": type_,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": _bounded(detail),
    }
    if errors:
        body["errors"] = errors
        if errors_omitted:
            body["errors_omitted"] = errors_omitted
        if status == 422:
            metrics.count_validation_failures(endpoint_label(), errors)
    if request_id():
        body["request_id"] = request_id()
    return Response(encode(body), status=status, mimetype=PROBLEM_MIMETYPE, headers=headers)


def flatten_messages(messages, limit: int = MAX_ERRORS) -> tuple[dict[str, list[str]], int]:
    """marshmallow's nested {"layers": {1: {"biases": [...]}}} -> {"layers.1.biases": [...]}.

    At most ``limit`` paths, each bounded; the second value counts the entries
    left out, which are only counted (100k unknown keys were a 15 MB answer).
    """
    flat: dict[str, list[str]] = {}
    omitted = 0

    def walk(node, prefix: str) -> None:
        nonlocal omitted
        if not isinstance(node, dict):
            path = prefix or "_request"
            if path in flat or len(flat) < limit:
                flat.setdefault(path, []).extend(_bounded(str(m)) for m in _as_list(node))
            else:
                omitted += 1
            return
        for index, (key, value) in enumerate(node.items()):
            if len(flat) >= limit:  # the rest only counted: no path built, nothing kept
                omitted += sum(map(_entries, islice(node.values(), index, None)))
                return
            if key == "_schema":
                walk(value, prefix)
            else:
                walk(value, f"{prefix}.{_segment(key)}" if prefix else _segment(key))

    walk(messages, "")
    return flat, omitted


def _entries(node) -> int:
    """How many paths a nested message tree holds (without building them)."""
    if not isinstance(node, dict):
        return 1
    return sum(map(_entries, node.values()))


def _segment(key) -> str:
    key = str(key)
    if len(key) <= PATH_SEGMENT_LIMIT:
        return key
    return f"{key[:PATH_SEGMENT_LIMIT]}... ({len(key):,} characters)"


def _bounded(message: str) -> str:
    if len(message) <= MESSAGE_LIMIT:
        return message
    return f"{message[:MESSAGE_LIMIT]}... (cut at {MESSAGE_LIMIT:,} of {len(message):,} characters)"


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _summary(errors: dict[str, list[str]], omitted: int = 0) -> str:
    path, messages = next(iter(errors.items()))
    more = len(errors) - 1 + omitted
    tail = f" (and {more:,} more field(s); see errors)" if more else ""
    return f"{path}: {messages[0]}{tail}"


def handle_http_exception(error: HTTPException) -> Response:
    data = getattr(error, "data", None) or {}
    if error.code == 422 and "messages" in data:
        # webargs nests the schema's messages under the location it parsed.
        messages = data["messages"]
        messages = messages.get("json", messages) if isinstance(messages, dict) else messages
        errors, omitted = flatten_messages(messages)
        return problem(
            422,
            _summary(errors, omitted),
            errors=errors,
            errors_omitted=omitted,
            type_=PROBLEM_TYPES["validation"],
        )
    # Allow (405), WWW-Authenticate (401), Retry-After (429, 503) ride along.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return problem(error.code or 500, error.description or "", headers=headers)


def handle_core_error(error: CoreError) -> Response:
    errors = {_segment(error.field): [_bounded(error.message)]}
    return problem(
        422, _summary(errors), errors=errors, type_=PROBLEM_TYPES.get(type(error), "about:blank")
    )


def handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error")
    return problem(500, "The service failed unexpectedly; the error has been logged.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(CoreError, handle_core_error)
    app.register_error_handler(Exception, handle_unexpected)
