"""Every error becomes one shape: RFC 9457 problem+json, never HTML, never a trace.

Three sources reach this module: HTTP errors (raised by Werkzeug, webargs or
the body reader), validation errors (webargs' 422 carrying marshmallow's
nested messages), and the core's own refusals (limits, overflow).  Each is
turned into ``{type, title, status, detail[, errors]}`` here and nowhere else.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from service.core import CoreError, LimitExceeded, NonFiniteResult

from . import metrics
from .json import encode
from .requestlog import endpoint_label, request_id

PROBLEM_MIMETYPE = "application/problem+json"
PROBLEM_TYPES = {
    "validation": "urn:gradient-service:problem:validation",
    LimitExceeded: "urn:gradient-service:problem:limit-exceeded",
    NonFiniteResult: "urn:gradient-service:problem:non-finite-result",
}

log = logging.getLogger(__name__)


def problem(
    status: int,
    detail: str,
    *,
    errors: dict[str, list[str]] | None = None,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"type": type_, "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
        if status == 422:
            metrics.count_validation_failures(endpoint_label(), errors)
    if request_id():
        body["request_id"] = request_id()
    return Response(encode(body), status=status, mimetype=PROBLEM_MIMETYPE, headers=headers)


def flatten_messages(messages, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested {"layers": {1: {"biases": [...]}}} -> {"layers.1.biases": [...]}."""
    if not isinstance(messages, dict):
        return {prefix or "_request": [str(m) for m in _as_list(messages)]}
    flat: dict[str, list[str]] = {}
    for key, value in messages.items():
        path = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
        flat.update(flatten_messages(value, path))
    return flat


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _summary(errors: dict[str, list[str]]) -> str:
    path, messages = next(iter(errors.items()))
    more = len(errors) - 1
    tail = f" (and {more} more field(s); see errors)" if more else ""
    return f"{path}: {messages[0]}{tail}"


def handle_http_exception(error: HTTPException) -> Response:
    data = getattr(error, "data", None) or {}
    if error.code == 422 and "messages" in data:
        # webargs nests the schema's messages under the location it parsed.
        messages = data["messages"]
        messages = messages.get("json", messages) if isinstance(messages, dict) else messages
        errors = flatten_messages(messages)
        return problem(422, _summary(errors), errors=errors, type_=PROBLEM_TYPES["validation"])
    # Allow (405), WWW-Authenticate (401), Retry-After (429, 503) ride along.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return problem(error.code or 500, error.description or "", headers=headers)


def handle_core_error(error: CoreError) -> Response:
    errors = {error.field: [error.message]}
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
