"""Reading a request body: JSON only, parsed once by orjson, an object at the top.

Plugged into webargs (and so flask-smorest's ``@blp.arguments``) as the JSON
loader, so every endpoint reads its body the same way.
"""

from __future__ import annotations

import orjson
from flask import Request
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, UnsupportedMediaType


def read_json_object(request: Request) -> dict:
    """The body as a dict; 415 for a non-JSON Content-Type, 400 for anything unparsable."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}; "
            "send the body as JSON (curl: -H 'Content-Type: application/json')."
        )
    body = request.get_data(cache=True)  # 413 here when Content-Length is over the limit
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(
            f"the body is not valid JSON ({error}); NaN and Infinity are not JSON numbers."
        ) from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object {{...}}, got a JSON {_kind(data)}.")
    return data


def _kind(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


class JsonObjectParser(FlaskParser):
    """webargs' Flask parser with our body reader."""

    def _raw_load_json(self, req: Request):
        return read_json_object(req)
