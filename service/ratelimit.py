"""Rate limits on /v1/: per API key (per client address without keys) and endpoint.

One fixed-window limit, ``RATELIMIT_DEFAULT`` (GRADIENT_RATELIMIT_DEFAULT), counted in
``RATELIMIT_STORAGE_URI`` (GRADIENT_RATELIMIT_STORAGE_URI): memory:// counts per worker,
redis://host:6379 holds the limit across every worker and replica.  Every routed /v1/
response says X-RateLimit-Limit, -Remaining and -Reset (epoch seconds); past the limit
the answer is 429, problem+json with Retry-After (service.errors).  If the store fails or
does not answer within GRADIENT_RATELIMIT_STORAGE_TIMEOUT, the request goes through
uncounted, and one warning says so (service.ratestore): a Redis outage should not become
a service outage.

Two hooks over the ``limits`` library rather than Flask-Limiter, its Flask extension:
on a small POST /v1/gradients called directly as WSGI, Flask-Limiter's per-request
machinery (resolving decorated, blueprint and default limits, exemption scopes, header
injection) cost about 250 µs of 950 µs in every configuration tried, while the count
itself, two store operations, is about 10 µs.  The storage keys are the ones
Flask-Limiter wrote (prefix, client, endpoint), so counts already in Redis carry over.
memory:// is limits' MemoryStorage less its expiry thread (see ratestore.SweptMemoryStorage).
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, g, request
from limits import parse
from werkzeug.exceptions import TooManyRequests

from .auth import PROTECTED_PREFIX, client_identity
from .ratestore import GuardedStore, storage

EXTENSION = "gradient_ratelimit"


class RateLimit:
    """One limit: counted before each /v1/ request, reported on its response."""

    def __init__(self, limit: str, store: GuardedStore, key_prefix: str) -> None:
        self.item = parse(limit)
        self.store = store
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
        expiry = self.item.get_expiry()
        counted = self.store.use(lambda store: (store.incr(key, expiry), store.get_expiry(key)))
        if counted is None:  # the store failed: through, uncounted (service.ratestore)
            return
        count, reset_time = counted
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
    store = GuardedStore(
        storage(app.config["RATELIMIT_STORAGE_URI"], app.config["RATELIMIT_STORAGE_TIMEOUT"])
    )
    limit = RateLimit(
        app.config["RATELIMIT_DEFAULT"],
        store,
        app.config["RATELIMIT_KEY_PREFIX"],
    )
    app.extensions[EXTENSION] = limit
    app.before_request(limit.hit)
    app.after_request(limit.add_headers)
    return limit
