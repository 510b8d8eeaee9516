"""JSON in and out: msgspec for the document, orjson for the numbers of NumPy arrays.

Each library is used for what it does fastest, measured here on the large
benchmark request (15.8 MB of base64 arrays in, 18.4 MB out):

- parsing: msgspec 7 ms, orjson 20 ms (orjson builds long strings slowly);
  on a medium body of nested numbers msgspec is ahead too (11.7 ms to 13.3);
- writing: msgspec writes the document and its long strings (10 ms, orjson 16),
  and hands every ndarray to orjson, which serialises them natively (much faster
  than any ``tolist``), embedded as raw JSON (``msgspec.Raw``).

The parser is as strict as orjson was: NaN, Infinity, invalid UTF-8, control
characters in strings, lone surrogates and trailing content are refused.  One
difference: an integer too large for a double is kept as a Python int rather
than refused here; the number fields refuse it as not finite (schemas.fields).
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import orjson
from flask.json.provider import JSONProvider

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


_encoder = msgspec.json.Encoder(enc_hook=_encode_numpy)
_decoder = msgspec.json.Decoder()


def encode(value: Any) -> bytes:
    """UTF-8 JSON bytes of ``value``: dicts, lists, numbers, strings, ndarrays, NumPy scalars."""
    return _encoder.encode(value)


def decode(body: bytes | str) -> Any:
    """The document in ``body``, or InvalidJSON."""
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise InvalidJSON(str(error)) from None
    except RecursionError:
        raise InvalidJSON("the document is nested too deeply") from None


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
