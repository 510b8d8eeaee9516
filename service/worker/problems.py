"""The worker's own answers, problem+json like service/http/errors.py's: the requests gunicorn
could not parse, a request that did not arrive in time, a body with no room.

Part of service/worker (see its docstring for the whole design).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from ssl import SSLError

from gunicorn.http import errors as http_errors


def problem_bytes(status: int, detail: str, headers: tuple[str, ...] = ()) -> bytes:
    """A whole HTTP/1.1 answer carrying a problem document like service/http/errors.py's."""
    body = json.dumps(
        {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
    ).encode()
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Connection: close",
        "Content-Type: application/problem+json",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def excerpt(text: str, limit: int = 80) -> str:
    """At most ``limit`` characters of what the client sent, control characters escaped."""
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


#: gunicorn's refusals of a request it could not parse: (exceptions, status, what to do)
CLIENT_ERRORS: tuple[tuple[tuple[type[BaseException], ...], int, str], ...] = (
    (
        (http_errors.LimitRequestLine,),
        414,
        "the request line is longer than this server accepts; send a shorter URL.",
    ),
    (
        (http_errors.LimitRequestHeaders,),
        431,
        "the request's headers are too many or too large; send fewer or smaller headers.",
    ),
    (
        (http_errors.InvalidRequestLine, http_errors.InvalidRequestMethod),
        400,
        "the request line is not 'METHOD /path HTTP/1.1'.",
    ),
    ((http_errors.InvalidHTTPVersion,), 400, "only HTTP/1.0 and HTTP/1.1 are served."),
    (
        (
            http_errors.InvalidHeader,
            http_errors.InvalidHeaderName,
            http_errors.ObsoleteFolding,
            http_errors.InvalidSchemeHeaders,
        ),
        400,
        "a request header is malformed or contradicts another one.",
    ),
    (
        (
            http_errors.InvalidChunkSize,
            http_errors.ChunkMissingTerminator,
            http_errors.InvalidChunkExtension,
        ),
        400,
        "the chunked body is malformed.",
    ),
    (
        (http_errors.UnsupportedTransferCoding,),
        501,
        "only the chunked Transfer-Encoding is supported.",
    ),
    ((http_errors.ExpectationFailed,), 417, "only 'Expect: 100-continue' is supported."),
    ((http_errors.InvalidProxyLine,), 400, "the PROXY protocol line is malformed."),
    ((http_errors.ForbiddenProxyRequest,), 403, "PROXY lines are not accepted from here."),
    ((SSLError,), 403, "the TLS handshake failed."),
)


BUSY = json.dumps(
    {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "this worker holds as many large request bodies as it may; retry shortly.",
    }
).encode()
