"""A wall-clock budget for one computation, checked between steps.

The work limits bound the size of each step (a forward or backward pass);
the budget bounds how many steps run, so a request ends with a clear 422
long before gunicorn's worker timeout would kill it with an HTML 500.
"""

from __future__ import annotations

import time

from .errors import LimitExceeded


class Deadline:
    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        """Raise LimitExceeded once the budget is spent."""
        if self._at is not None and time.monotonic() > self._at:
            raise LimitExceeded(
                "_request",
                f"the computation ran past this service's time budget of {self.seconds:g} s "
                "(GRADIENT_TIME_BUDGET_SECONDS); send a smaller problem.",
            )


NO_DEADLINE = Deadline(None)
