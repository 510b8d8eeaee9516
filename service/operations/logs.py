"""Operational log lines: JSON, one per line, on stdout (the access log and the rate store's).

Here rather than in service.http.requestlog because the rate-limit store logs
through it too, and operations must not import the HTTP plumbing.  A line's
fields are plain values (strings, numbers, None), so msgspec writes them as
they are.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import msgspec


class _Stdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (test runners swap it), not the one at start."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return msgspec.json.encode(line).decode()


def json_lines_logger(name: str, propagate: bool = True) -> logging.Logger:
    """A logger writing JSON lines to stdout (once, however often it is asked for).

    Only the access log stops its lines at itself: the rare operational lines (the
    rate-limit store's outages) also reach the root logger's handlers, if any are set.
    """
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = _Stdout()
        handler.setFormatter(JsonLines())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = propagate
    return logger
