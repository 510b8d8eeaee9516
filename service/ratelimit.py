"""Rate limits on /v1/: per API key (per client address without keys) and endpoint.

One fixed-window limit, ``RATELIMIT_DEFAULT`` (GRADIENT_RATELIMIT_DEFAULT), counted in
``RATELIMIT_STORAGE_URI`` (GRADIENT_RATELIMIT_STORAGE_URI): memory:// counts per worker,
redis://host:6379 holds the limit across every worker and replica.  Every routed /v1/
response says X-RateLimit-Limit, -Remaining and -Reset (epoch seconds); past the limit
the answer is 429, problem+json with Retry-After (service.errors).  If the store cannot
be reached the request goes through and the failure is logged: a Redis outage should
not become a service outage.

Two hooks over the ``limits`` library rather than Flask-Limiter, its Flask extension:
on a small POST /v1/gradients called directly as WSGI, Flask-Limiter's per-request
machinery (resolving decorated, blueprint and default limits, exemption scopes, header
injection) cost about 250 µs of 950 µs in every configuration tried, while the count
itself, two store operations, is about 10 µs.  The storage keys are the ones
Flask-Limiter wrote (prefix, client, endpoint), so counts already in Redis carry over.
memory:// is limits' MemoryStorage less its expiry thread (see SweptMemoryStorage).
"""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, g, request
from limits import parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from werkzeug.exceptions import TooManyRequests

from .auth import PROTECTED_PREFIX, client_identity

log = logging.getLogger(__name__)


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage, with expired counts dropped inline instead of by a thread.

    MemoryStorage starts a ``threading.Timer`` whenever a hit finds the previous one done:
    every 10 ms under load, on every request when they come further apart.  Starting a
    thread takes 150-300 µs on a 2-core machine; on back-to-back small POST /v1/gradients
    the whole limit costs about 50 µs with this class and about 75 µs with MemoryStorage.
    ``get`` already drops a key whose window is over; at most once a second ``incr`` also
    drops every other such key, so counts of clients that never come back do not pile up.
    """

    def __init__(self) -> None:
        super().__init__()
        self.next_sweep = 0.0

    # MemoryStorage.incr calls this private hook to start its thread; a limits that stopped
    # calling it would fail test_the_in_process_store_starts_no_thread_per_request.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.time()
        if now >= self.next_sweep:
            self.next_sweep = now + 1
            for key in [key for key, expiry in self.expirations.items() if expiry <= now]:
                self.get(key)


def storage(uri: str) -> Storage:
    """The store a ``RATELIMIT_STORAGE_URI`` names; every failure of it is a StorageError."""
    if uri == "memory://":
        return SweptMemoryStorage()
    return storage_from_string(uri, wrap_exceptions=True)


class RateLimit:
    """One limit: counted before each /v1/ request, reported on its response."""

    def __init__(self, limit: str, storage_uri: str, key_prefix: str) -> None:
        self.item = parse(limit)
        self.storage = storage(storage_uri)
        self.key_prefix = key_prefix

    def hit(self) -> None:
        """before_request: count a routed /v1/ request; TooManyRequests past the limit."""
        # Requests that match no route (404, 405) have no endpoint and are not counted.
        if request.endpoint is None or not request.path.startswith(PROTECTED_PREFIX):
            return
        # A fixed window, as limits' FixedWindowRateLimiter counts it, but from the count
        # incr returns: two store operations rather than its three (hit, then
        # get_window_stats' get and get_expiry), so one Redis round trip fewer, and the
        # remaining count is this request's own even when other workers count too.
        key = self.item.key_for(self.key_prefix, client_identity(), request.endpoint)
        try:
            count = self.storage.incr(key, self.item.get_expiry())
            reset_time = self.storage.get_expiry(key)
        except StorageError:  # only the store's failures: a bug of ours still fails loudly
            log.exception("rate-limit storage failed; the request goes through uncounted")
            return
        g.rate_limit_window = max(0, self.item.amount - count), reset_time
        if count > self.item.amount:
            raise TooManyRequests(
                f"over the rate limit of {self.item}",
                retry_after=max(1, math.ceil(reset_time - time.time())),
            )

    def add_headers(self, response: Response) -> Response:
        """after_request: the limit, what is left of it, and when it resets."""
        window = g.get("rate_limit_window")
        if window is not None:
            remaining, reset_time = window
            response.headers.add("X-RateLimit-Limit", str(self.item.amount))
            response.headers.add("X-RateLimit-Remaining", str(remaining))
            response.headers.add("X-RateLimit-Reset", str(math.ceil(reset_time)))
        return response


def init_app(app: Flask) -> RateLimit | None:
    """Install the limit, unless ``RATELIMIT_ENABLED`` is false (the CLI's in-process app)."""
    if not app.config["RATELIMIT_ENABLED"]:
        return None
    limit = RateLimit(
        app.config["RATELIMIT_DEFAULT"],
        app.config["RATELIMIT_STORAGE_URI"],
        app.config["RATELIMIT_KEY_PREFIX"],
    )
    app.before_request(limit.hit)
    app.after_request(limit.add_headers)
    return limit
