"""Reading a request body: UTF-8 JSON only, parsed once by orjson, an object at the top.

Plugged into webargs (and so flask-smorest's ``@blp.arguments``) as the JSON
loader, so every endpoint reads its body the same way.  What it refuses:

- a Content-Type other than JSON (415), a Content-Encoding such as gzip (415);
- a body over the size limit however it is sent (413): Werkzeug refuses a
  declared Content-Length over the limit, but silently truncates a chunked
  body at the limit, so a streamed body is read one byte past it to know;
- anything orjson cannot parse (400): invalid UTF-8 or UTF-16, NaN,
  Infinity, 1e400, nesting deeper than 1024;
- duplicate keys in an object (400), which every fast parser silently
  resolves to the last one (see ``_has_duplicate_keys``);
- a top level that is not an object (400).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from flask import Request
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType


def read_json_object(request: Request) -> dict:
    """The body as a dict; 415, 413 or 400 with a message that says how to fix it."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}; "
            "send the body as JSON (curl: -H 'Content-Type: application/json')."
        )
    encoding = (request.content_encoding or "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send the body uncompressed."
        )
    body = _read_within_limit(request)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(
            f"the body is not valid UTF-8 JSON ({error}); NaN and Infinity are not JSON numbers."
        ) from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object {{...}}, got a JSON {_kind(data)}.")
    duplicate = _duplicate_key(body, data)
    if duplicate is not None:
        raise BadRequest(
            f"the key {duplicate!r} appears twice in one object; JSON parsers would silently "
            "keep only the last one. Send each key once."
        )
    return data


def _read_within_limit(request: Request) -> bytes:
    limit = request.max_content_length
    streamed = request.content_length is None and "wsgi.input_terminated" in request.environ
    if limit is None or not streamed:
        return request.get_data(cache=True)  # a declared length over the limit is 413 here
    body = request.environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise RequestEntityTooLarge(
            f"the body is over this service's limit of {limit:,} bytes (GRADIENT_MAX_BODY_BYTES)."
        )
    return body


# The end of an object key: a quote, optional white space, a colon.
_KEY_END = re.compile(rb'"\s*:')


def _keys_in_text(body: bytes) -> int:
    r"""Key ends in the text: '":' whose quote is not escaped (an even run of backslashes).

    Inside a JSON string every quote is escaped, so each unescaped '"\s*:' closes a key,
    except the opening quote of a string that starts with a colon: an overcount, which
    only sends the check down the exact path. The pattern starts with a literal quote,
    so the scan skips the long stretches of numbers and base64 at memchr speed.
    """
    count = 0
    for match in _KEY_END.finditer(body):
        first = start = match.start()
        while first and body[first - 1] == 0x5C:  # a backslash
            first -= 1
        count += (start - first) % 2 == 0
    return count


def _duplicate_key(body: bytes, data: dict) -> str | None:
    """The first key that appears twice in one object, or None.

    Fast path: count the keys in the text (``_keys_in_text``) and compare with
    the keys orjson kept.  The text count is never below the true number of
    keys, and orjson's is below it exactly when a duplicate was dropped, so equal
    counts prove there is none.  Any difference is settled exactly by
    re-parsing with the standard library, which reports every key of every object.
    """
    if _keys_in_text(body) == _count_keys(data):
        return None
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys) and not found:
            found.append(next(k for i, k in enumerate(keys) if k in keys[:i]))
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except RecursionError:
        raise BadRequest("the body is nested too deeply to be a request.") from None
    return found[0] if found else None


def _count_keys(data: Any) -> int:
    """Keys of every object, skipping lists of numbers (an undercount forces the exact path)."""
    count, stack = 0, [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            count += len(value)
            stack.extend(value.values())
        elif isinstance(value, list) and value:
            first = value[0]
            numeric_rows = isinstance(first, list) and not (
                first and isinstance(first[0], (dict, list))
            )
            if isinstance(first, (dict, list)) and not numeric_rows:
                stack.extend(value)
    return count


def _kind(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


class JsonObjectParser(FlaskParser):
    """webargs' Flask parser with our body reader."""

    def _raw_load_json(self, req: Request):
        return read_json_object(req)
