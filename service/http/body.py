"""Reading a request body: UTF-8 JSON only, parsed once (service.http.json), an object at the top.

Plugged into webargs (and so flask-smorest's ``@blp.arguments``) as the JSON
loader, so every endpoint reads its body the same way.  What it refuses:

- a Content-Type other than JSON (415), a Content-Encoding such as gzip (415);
- a body over the size limit however it is sent (413): Werkzeug refuses a
  declared Content-Length over the limit, but silently truncates a chunked
  body at the limit, so a streamed body is read one byte past it to know;
- a body of more numbers than GRADIENT_MAX_ELEMENTS allows (422), counted in
  the raw text before it is parsed (service.http.prescan: milliseconds, where
  parsing 24 MB of numbers takes seconds);
- anything that is not one JSON document (400): invalid UTF-8 or UTF-16, NaN,
  Infinity, 1e400, nesting about 1,000 deep;
- duplicate keys in an object (400), which every fast parser silently
  resolves to the last one (service.http.duplicates);
- a top level that is not an object (400).
"""

from __future__ import annotations

from flask import Request, current_app
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from schemas.bounded import quoted
from service.core import LimitExceeded
from service.core.cost import most_parse_bytes, text_parse_bytes
from service.core.limits import size_text

from .duplicates import first_duplicate
from .json import InvalidJSON, decode
from .prescan import census, numbers_over


def read_json_object(request: Request) -> dict:
    """The body as a dict; 415, 413 or 400 with a message that says how to fix it."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {quoted(request.mimetype or 'none')}; "
            "send the body as JSON (curl: -H 'Content-Type: application/json')."
        )
    encoding = (request.content_encoding or "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(
            f"Content-Encoding {quoted(encoding)} is not supported; send the body uncompressed."
        )
    body = _read_within_limit(request)
    _refuse_too_many_numbers(body)
    _refuse_costly_parse(body)
    try:
        data = decode(body)
    except InvalidJSON as error:
        raise BadRequest(
            f"the body is not valid UTF-8 JSON ({error}); NaN and Infinity are not JSON numbers."
        ) from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object {{...}}, got a JSON {_kind(data)}.")
    duplicate = first_duplicate(body, data)
    if duplicate is not None:
        raise BadRequest(
            f"the key {quoted(duplicate)} appears twice in one object; JSON parsers would silently "
            "keep only the last one. Send each key once."
        )
    return data


def _read_within_limit(request: Request) -> bytes:
    """The whole body in one read.

    A declared length is read with one call on the WSGI input: gunicorn then
    receives it in 1 MiB steps, where Werkzeug's ``get_data`` loops over 64 KiB
    reads and copies every piece twice (22 ms of a 16 MB body, measured).
    """
    limit = request.max_content_length
    length = request.content_length
    if length is not None:
        if limit is not None and length > limit:
            raise RequestEntityTooLarge(_over_limit(limit))
        body = request.environ["wsgi.input"].read(length) if length else b""
        if len(body) < length:
            raise BadRequest(
                f"the body ended after {len(body):,} of its {length:,} declared bytes "
                "(Content-Length); send the whole body."
            )
        return body
    if limit is None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=True)
    # Werkzeug silently truncates a streamed body at the limit: read one byte past it.
    body = request.environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise RequestEntityTooLarge(_over_limit(limit))
    return body


def _over_limit(limit: int) -> str:
    return f"the body is over this service's limit of {limit:,} bytes (GRADIENT_MAX_BODY_BYTES)."


#: Numbers a valid request may hold outside its arrays, per layer (and two layers more):
#: the shapes of binary arrays (8 numbers, 7 arrays a layer in /v1/check), scalar
#: settings, /v1/exercises' layer sizes.  Only a body over the element limit by more
#: than these is refused unparsed, so the refusal never catches a valid request.
NUMBERS_OUTSIDE_ARRAYS_PER_LAYER = 64


def _refuse_too_many_numbers(body: bytes) -> None:
    """GRADIENT_MAX_ELEMENTS decided from the text, before parsing (422 LimitExceeded)."""
    limits = current_app.config["GRADIENT_LIMITS"]
    allowance = NUMBERS_OUTSIDE_ARRAYS_PER_LAYER * (limits.max_layers + 2)
    found = numbers_over(body, limits.max_elements + allowance)
    if found:
        raise LimitExceeded(
            "_request",
            f"the body holds {found:,} numbers, over this service's limit of "
            f"{limits.max_elements:,} (GRADIENT_MAX_ELEMENTS), so it was refused before "
            "parsing. Send fewer numbers: a smaller batch, split over several requests. "
            '(Large arrays also parse far faster in the binary form {"dtype": "float64", '
            '"shape": [...], "data": "<base64>"}; the limit counts their elements too.)',
        )


def _refuse_costly_parse(body: bytes) -> None:
    """GRADIENT_MAX_REQUEST_BYTES for the parse itself, decided from the text: a body of
    empty lists or objects is few numbers but many Python objects (11 million "[]" in a
    31.5 MiB body took a worker to 1.6 GiB before its arrays were ever priced).  A body too
    short to cost that much, whatever it holds, is not scanned (422 LimitExceeded)."""
    limit = current_app.config["GRADIENT_LIMITS"].max_request_bytes
    if most_parse_bytes(len(body)) <= limit:
        return
    found = census(body)
    cost = text_parse_bytes(len(body), found.numbers, found.lists, found.objects, found.strings)
    if cost > limit:
        raise LimitExceeded(
            "_request",
            f"parsing the body would hold about {size_text(cost)} as Python objects "
            f"({found.numbers:,} numbers, {found.lists:,} lists, {found.objects:,} objects, "
            f"{found.strings:,} strings), {cost / limit:.1f}x this service's limit of "
            f"{size_text(limit)} (GRADIENT_MAX_REQUEST_BYTES), so it was refused before "
            "parsing. Send arrays as long rows rather than many short lists, fewer values, or "
            'large arrays in the binary form {"dtype": "float64", "shape": [...], '
            '"data": "<base64>"}.',
        )


def _kind(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


class JsonObjectParser(FlaskParser):
    """webargs' Flask parser with our body reader."""

    def _raw_load_json(self, req: Request):
        return read_json_object(req)
