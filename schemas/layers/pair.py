"""A window's size or step: one whole number for both axes, or a [height, width] pair.

The core takes a (height, width) tuple; the client may send 2 or [2, 3] (PyTorch's
``stride=2`` / ``stride=(2, 3)``, Ng's ``hparameters["stride"]``).
"""

from __future__ import annotations

from marshmallow import ValidationError, fields

from ..fields import json_type


class Pair(fields.Field):
    """A whole number >= ``minimum``, or a list of two; loaded as a (height, width) tuple."""

    def __init__(self, minimum: int, what: str, **kwargs):
        self.minimum, self.what = minimum, what
        whole = {"type": "integer", "minimum": minimum}
        pair = {"type": "array", "items": whole, "minItems": 2, "maxItems": 2}
        metadata = {"oneOf": [whole, pair], **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs) -> tuple[int, int]:
        items = value if isinstance(value, list) else [value, value]
        if len(items) != 2 or not all(_whole(v) for v in items):
            raise ValidationError(
                f"expected a whole number or a [height, width] pair of them (the {self.what}), "
                f"got {_said(value)}."
            )
        if min(items) < self.minimum:
            raise ValidationError(
                f"the {self.what} must be at least {self.minimum} on each axis, got {value!r}."
            )
        return int(items[0]), int(items[1])

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else list(value)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _said(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)" if len(value) != 2 else repr(value)[:80]
    return json_type(value)
