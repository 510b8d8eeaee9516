"""The core's own failures: a problem it refuses to compute, or cannot.

They carry the field path that caused them, so the HTTP layer can report
them in the same ``errors`` map as a schema error, without the core knowing
anything about HTTP.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base class: ``field`` is a dotted path into the request, ``message`` says why."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class LimitExceeded(CoreError):
    """The request asks for more work than the configured bounds allow."""


class NonFiniteResult(CoreError):
    """A computed value overflowed to inf or nan; JSON cannot carry it."""
