"""Rate limits on /v1/: a request count per endpoint, and a compute budget for expensive work.

Both are counted per API key (per client address without keys) in
``RATELIMIT_STORAGE_URI`` (GRADIENT_RATELIMIT_STORAGE_URI): memory:// counts per worker,
redis://host:6379 holds them across every worker and replica.  Past either, the answer is
429, problem+json with Retry-After (service.http.errors).  If the store fails or does not answer
within GRADIENT_RATELIMIT_STORAGE_TIMEOUT, the request goes through uncounted, and one
warning says so (service.operations.ratestore): a Redis outage should not become a service outage.

**The request count**, ``RATELIMIT_DEFAULT`` (GRADIENT_RATELIMIT_DEFAULT, 600 per minute), is
a fixed window per client and endpoint, counted before the request is read.  Every routed
/v1/ response says X-RateLimit-Limit, -Remaining and -Reset (epoch seconds).

**The compute budget**, ``RATELIMIT_COMPUTE_SECONDS`` (GRADIENT_RATELIMIT_COMPUTE_SECONDS,
30 per minute), is the seconds of computation one client may use per window on expensive
requests: those that ask for a numerical ``gradient_check``, and those whose estimated work
(the FLOPs the cost model priced it at, service/core/cost.py) is over
``GRADIENT_EXPENSIVE_FLOPS`` (10^8, 10 to 20 ms of one core here).  Once the request is
parsed and its cost known, the view calls ``meter``: past the budget it is a 429 whose
Retry-After is the end of the window; otherwise the request runs and, when it ends
(answered, refused by the time budget, or failed), its wall-clock seconds are charged.

Why seconds and not a second, lower request count: a count cannot tell a 3 ms gradient
check on a 2-3-1 network from one that runs its whole 20 s time budget.  A count low enough
to stop the second (10 a minute would still let one client keep three workers busy) would
stop a student checking a toy network; a budget in seconds lets that student check
hundreds and holds the other to 30 s a minute, about a quarter of one pod's two workers.
Seconds are what an operator sizes workers in, need no model of the machine, and measure
what the requests really cost.  Cheap requests are not metered (no store operation added
to them): the request count bounds them, at 600 a minute of 20 ms at most, 12 s of a
worker a minute; metering costs two store operations, about 1% of a 10 ms request.  The budget
is checked before a request starts and charged when it ends, so a client's requests
already running when it runs out still finish: the overshoot is at most one time budget
per request the client has in flight at once.

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

from flask import Flask, Response, current_app, g, request
from limits import parse
from werkzeug.exceptions import TooManyRequests

from service.core.cost import Cost

from .auth import PROTECTED_PREFIX, client_identity
from .ratestore import GuardedStore, storage

EXTENSION = "gradient_ratelimit"


class RateLimit:
    """The request count (before each /v1/ request) and the compute budget (``meter``)."""

    def __init__(
        self,
        limit: str,
        store: GuardedStore,
        key_prefix: str,
        compute_seconds: str,
        expensive_flops: int,
    ) -> None:
        self.item = parse(limit)
        self.store = store
        self.key_prefix = key_prefix
        self.compute = parse(compute_seconds)
        self.expensive_flops = expensive_flops

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
        if counted is None:  # the store failed: through, uncounted (service.operations.ratestore)
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

    def is_expensive(self, cost: Cost, gradient_check: bool) -> bool:
        return gradient_check or cost.flops > self.expensive_flops

    def start_metering(self) -> None:
        """Refuse once this client's compute budget is spent; else start its clock."""
        key = self.compute.key_for(self.key_prefix, client_identity(), "compute")
        used_ms = self.store.use(lambda store: store.get(key))
        if used_ms is not None and used_ms >= self.compute.amount * 1000:
            reset_time = self.store.use(lambda store: store.get_expiry(key)) or time.time()
            retry_after = max(1, math.ceil(reset_time - time.time()))
            raise TooManyRequests(
                f"over the compute budget of {self.compute.amount} s of computation per "
                f"{str(self.compute).split(' per ', 1)[1]} for gradient checks and large "
                "problems (GRADIENT_RATELIMIT_COMPUTE_SECONDS): this client used "
                f"{used_ms / 1000:.1f} s. Try again in {retry_after} s; smaller requests "
                "go through meanwhile.",
                retry_after=retry_after,
            )
        g.metered = key, time.perf_counter()

    def charge(self, _error: BaseException | None = None) -> None:
        """teardown_request: charge a metered request's seconds, however it ended."""
        metered = g.pop("metered", None)
        if metered is None:
            return
        key, started = metered
        spent_ms = math.ceil((time.perf_counter() - started) * 1000)
        expiry = self.compute.get_expiry()
        self.store.use(lambda store: store.incr(key, expiry, amount=spent_ms))


def meter(cost: Cost, gradient_check: bool = False, expensive: bool = False) -> None:
    """In a view, once the request's ``cost`` passed the limits: meter it if it is expensive
    (``expensive``: whatever its FLOPs, as a batch of gradings is).

    ``cost.flops`` already counts every pass the request needs (the autograder's mistaken
    passes, a gradient check's nudges).  Raises TooManyRequests when this client's compute
    budget is spent.
    """
    limit = current_app.extensions.get(EXTENSION)
    if limit is not None and (expensive or limit.is_expensive(cost, gradient_check)):
        limit.start_metering()


def init_app(app: Flask) -> RateLimit | None:
    """Install the limits, unless ``RATELIMIT_ENABLED`` is false (the CLI's in-process app)."""
    if not app.config["RATELIMIT_ENABLED"]:
        return None
    store = GuardedStore(
        storage(app.config["RATELIMIT_STORAGE_URI"], app.config["RATELIMIT_STORAGE_TIMEOUT"])
    )
    limit = RateLimit(
        app.config["RATELIMIT_DEFAULT"],
        store,
        app.config["RATELIMIT_KEY_PREFIX"],
        app.config["RATELIMIT_COMPUTE_SECONDS"],
        app.config["GRADIENT_EXPENSIVE_FLOPS"],
    )
    app.extensions[EXTENSION] = limit
    app.before_request(limit.hit)
    app.after_request(limit.add_headers)
    app.teardown_request(limit.charge)
    return limit
