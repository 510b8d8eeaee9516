"""One JSON line per request on stdout, a request id on every answer, and the metrics.

The request id is the client's X-Request-ID when it is a sane token, else a
new one; it is echoed in the X-Request-ID header and in problem documents so
a student's error report can be found in the logs.  Bodies and keys are never
logged: the line holds sizes, and the key only as a short hash.

A request's duration counts from when the server received it (service/worker/
puts that moment in the environ), so time spent waiting behind another computation
shows: ``queued_ms`` is that wait (and the body's arrival), ``duration_ms`` the
whole.  Without it (the test client) both start when Flask does.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, has_request_context, request

from service.operations import metrics
from service.operations.logs import json_lines_logger
from service.worker import ARRIVED

HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

log = logging.getLogger("gradient.access")


def request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def endpoint_label() -> str:
    """The route's pattern, never the raw path: unknown paths must not create new series."""
    return request.url_rule.rule if request.url_rule else "(unmatched)"


def _start() -> None:
    incoming = request.headers.get(HEADER, "")
    g.request_id = incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex
    now = time.monotonic()
    g.started = request.environ.get(ARRIVED) or now
    g.queued = now - g.started


def _finish(response: Response) -> Response:
    response.headers[HEADER] = g.get("request_id", "")
    now = time.monotonic()
    seconds = now - g.get("started", now)
    sizes = (request.content_length or 0, response.calculate_content_length() or 0)
    metrics.observe(endpoint_label(), request.method, response.status_code, seconds, sizes)
    log.info(
        "request",
        extra={
            "fields": {
                "request_id": g.get("request_id"),
                "method": request.method,
                "endpoint": endpoint_label(),
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 3),
                "queued_ms": round(g.get("queued", 0.0) * 1000, 3),
                "request_bytes": sizes[0],
                "response_bytes": sizes[1],
                "client": request.remote_addr,
                "key_id": g.get("key_id"),
            }
        },
    )
    return response


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    json_lines_logger(log.name, propagate=False)
