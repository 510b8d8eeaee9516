"""The base schema: unknown fields are errors, with a did-you-mean."""

from __future__ import annotations

from functools import cached_property

from marshmallow import RAISE, Schema, ValidationError, pre_load

from .bounded import SUGGESTED_UNKNOWN, did_you_mean


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
        listing = f"Known fields: {', '.join(known)}."
        strangers = [key for key in data if key not in known]
        unknown = {
            key: [f"unknown field.{did_you_mean(str(key), known)} {listing}"]
            for key in strangers[:SUGGESTED_UNKNOWN]
        }
        # past the first few, no work per key (100k unknown keys took 4.5 s of difflib):
        # one message list, shared, never changed (the error document copies what it shows)
        plain = [f"unknown field. {listing}"]
        unknown.update(dict.fromkeys(strangers[SUGGESTED_UNKNOWN:], plain))
        raise ValidationError(unknown)

    @cached_property
    def _known_keys(self) -> dict[str, None]:
        """The keys this schema loads, in declaration order (a dict as an ordered set)."""
        return dict.fromkeys(field.data_key or name for name, field in self.load_fields.items())
