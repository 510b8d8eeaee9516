"""JSON in and out: each of two libraries where it is fastest.

Measured here, interleaved in one process:

- parsing long strings (the large benchmark request, 15.8 MB of base64 arrays):
  msgspec 6.8 ms, orjson 20.5 ms, so a body that carries a binary array
  (``"data": "<base64>"``) is parsed by msgspec;
- parsing numbers (the medium request, 3.1 MB of nested lists): orjson 6.5 ms,
  msgspec 8.0 ms, so every other body up to 1 MiB is parsed by orjson;
- memory: orjson first builds a document tree (a copy of the body and 16 bytes
  a value), alive beside the Python objects it then builds, where msgspec builds
  the objects directly.  Measured in a fresh process on the largest /v1/check the
  limits accept (31.7 MiB of numbers), the parse peaked at 123 MiB with orjson
  and 64 MiB with msgspec, which then took 234 ms each (msgspec was 0.6 to 0.8 of
  orjson's time on three other bodies of numbers, 3 to 26 MiB; 2026-12-02).  So a
  body over 1 MiB is parsed by msgspec, which is what bounds a worker's memory;
  when msgspec refuses it, orjson parses it again for the same error message as a
  small body gets (an invalid body builds no tree: yyjson stops at the error).
- writing: msgspec writes the document (10 ms for the large answer, orjson 16)
  and takes every ndarray as raw JSON text (``msgspec.Raw``): nested lists from
  orjson, which serialises arrays natively (much faster than any ``tolist``),
  or the binary form from schemas.binary, when the client asked for base64.

Both parsers refuse NaN, Infinity, invalid UTF-8, control characters in
strings, lone surrogates and trailing content.  They differ on an integer too
large for a double: orjson refuses it as the body's error, msgspec keeps it as
a Python int, which the number fields refuse as not finite (schemas.fields):
so in a body over 1 MiB, or one with a binary array, it is a 422 naming its field.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import orjson
from flask import Response, current_app
from flask.json.provider import JSONProvider

from schemas.binary import encode_json as binary_form
from service.core.cost import ORJSON_BODY

_ARRAY_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class InvalidJSON(ValueError):
    """A body that is not one UTF-8 JSON document; the message says where."""


def _encode_numpy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        # orjson serialises C-contiguous float arrays natively; anything else is copied first
        return msgspec.Raw(orjson.dumps(np.ascontiguousarray(value), option=_ARRAY_OPTIONS))
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _encode_numpy_binary(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return msgspec.Raw(binary_form(value))
    return _encode_numpy(value)


_encoder = msgspec.json.Encoder(enc_hook=_encode_numpy)
_binary_encoder = msgspec.json.Encoder(enc_hook=_encode_numpy_binary)
_decoder = msgspec.json.Decoder()


def encode(value: Any, binary_arrays: bool = False) -> bytes:
    """UTF-8 JSON bytes of ``value``: dicts, lists, numbers, strings, ndarrays, NumPy scalars.

    ndarrays are nested lists, or ``{"dtype", "shape", "data"}`` with ``binary_arrays``.
    """
    return (_binary_encoder if binary_arrays else _encoder).encode(value)


def response(value: Any, binary_arrays: bool = False) -> Response:
    """A 200 application/json answer of ``value`` (see ``encode``)."""
    return current_app.response_class(encode(value, binary_arrays), mimetype="application/json")


#: How a binary array's data begins: such a body is mostly base64 strings.
_BINARY_DATA = b'"data"'


def decode(body: bytes | str) -> Any:
    """The document in ``body``, or InvalidJSON."""
    if isinstance(body, bytes) and _BINARY_DATA in body:
        try:
            return _decoder.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as error:
            raise InvalidJSON(str(error)) from None
        except RecursionError:
            raise InvalidJSON("the document is nested too deeply") from None
    if len(body) > ORJSON_BODY:  # msgspec: no document tree beside the objects (see above)
        try:
            return _decoder.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass  # orjson's message, below: the one a smaller body gets
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidJSON(str(error)) from None


class JsonProvider(JSONProvider):
    """Flask's ``app.json``: the same encoder and decoder as the rest of the service."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return encode(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return decode(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(encode(obj), mimetype=self.mimetype)
