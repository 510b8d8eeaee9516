"""Per-student quotas on /v1/check: a grader is not an answer oracle.

``GRADIENT_CHECK_QUOTA`` ("10 per hour"; unset: no quota) is how many checks one
student may make per assignment, counted for each request that names a ``student``
(each entry of a batch names one).  Over it, /v1/check answers 429 problem+json with
Retry-After, and a batch entry says the same in its result.

The counts live in the rate limit's store (``GRADIENT_RATELIMIT_STORAGE_URI``): with a
Redis they are shared by every worker and replica and never held in process memory;
with memory:// each worker counts its own (a single-process deployment, or tests).
They are kept by the ``limits`` library's moving window, so "10 per hour" means at most
10 in any hour, not 20 across the turn of one; a refused check is not counted.  The
store is used through the rate limit's guard (service.operations.ratestore): the same
timeouts and circuit breaker, and like the rate limit a quota whose store fails lets
the check through uncounted rather than failing it.

Requests without a ``student`` are not counted: the quota protects a grader that names
its students.  With API keys configured, each key has its own students (two courses may
both have a student "s1"); without keys every caller shares one namespace.
"""

from __future__ import annotations

import math
import time
from urllib.parse import quote

from flask import Flask, current_app
from limits import parse
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from .auth import authenticated_key_id
from .ratestore import GuardedStore, storage

EXTENSION = "gradient_quota"


class Quota:
    def __init__(self, limit: str, store: GuardedStore, key_prefix: str) -> None:
        self.item = parse(limit)
        self.store = store
        self.key_prefix = key_prefix
        self.limiter = MovingWindowRateLimiter(store.storage)

    def admit(self, student: str, assignment: str | None) -> int | None:
        """Count one check; None if it may run, else the seconds until the next one may."""
        # limits joins identifiers with "/": quoted, ("a/b", "c") and ("a", "b/c") stay apart
        identifiers = (
            self.key_prefix,
            "quota",
            authenticated_key_id() or "-",
            quote(assignment or "-", safe=""),
            quote(student, safe=""),
        )
        allowed = self.store.use(lambda _: self.limiter.hit(self.item, *identifiers))
        if allowed is None or allowed:  # None: the store failed, the check goes through
            return None
        stats = self.store.use(lambda _: self.limiter.get_window_stats(self.item, *identifiers))
        reset_time = stats.reset_time if stats is not None else time.time() + 1
        return max(1, math.ceil(reset_time - time.time()))

    def refusal(self, retry_after: int) -> str:
        """What the student is told: the quota, and when the next check is allowed."""
        at = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + retry_after))
        return (
            f"over the quota of {self.item} checks per student and assignment "
            f"(GRADIENT_CHECK_QUOTA): the next check is allowed in {retry_after} s "
            f"(at {at})."
        )


def current() -> Quota | None:
    return current_app.extensions.get(EXTENSION)


def admit_or_refuse(student: str | None, assignment: str | None) -> None:
    """In /v1/check: count this check; TooManyRequests (429, Retry-After) over the quota."""
    quota = current()
    if quota is None or student is None:
        return
    retry_after = quota.admit(student, assignment)
    if retry_after is not None:
        raise TooManyRequests(quota.refusal(retry_after), retry_after=retry_after)


def init_app(app: Flask, store: GuardedStore | None) -> Quota | None:
    """Install the quota when GRADIENT_CHECK_QUOTA is set, in the rate limit's store (or,
    with the rate limit off, a guarded store of the same URI)."""
    limit = app.config["GRADIENT_CHECK_QUOTA"]
    if not limit:
        return None
    if store is None:
        store = GuardedStore(
            storage(app.config["RATELIMIT_STORAGE_URI"], app.config["RATELIMIT_STORAGE_TIMEOUT"])
        )
    quota = Quota(limit, store, app.config["RATELIMIT_KEY_PREFIX"])
    app.extensions[EXTENSION] = quota
    return quota
