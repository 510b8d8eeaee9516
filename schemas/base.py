"""The base schema: unknown fields are errors, with a did-you-mean."""

from __future__ import annotations

import difflib
from functools import cached_property

from marshmallow import RAISE, Schema, ValidationError, pre_load


class StrictSchema(Schema):
    """Rejects unknown keys (a typo such as ``bais`` must never be ignored)."""

    class Meta:
        unknown = RAISE

    error_messages = {"type": "expected a JSON object."}

    @pre_load
    def _reject_unknown_fields(self, data, **kwargs):
        if not isinstance(data, dict):
            return data  # marshmallow reports the type error
        known = self._known_keys
        if data.keys() <= known.keys():  # the usual case, one set comparison in C
            return data
        unknown = {}
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                unknown[key] = [f"unknown field.{hint} Known fields: {', '.join(known)}."]
        raise ValidationError(unknown)

    @cached_property
    def _known_keys(self) -> dict[str, None]:
        """The keys this schema loads, in declaration order (a dict as an ordered set)."""
        return dict.fromkeys(field.data_key or name for name, field in self.load_fields.items())
