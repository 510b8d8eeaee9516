"""The rate-limit store behind a guard: a Redis that hangs or refuses costs little and logs once.

Without timeouts, redis-py waits as long as the kernel does on a Redis that accepted the
connection but does not answer (SIGSTOPped, swapping, a partition that drops packets):
every /v1/ request blocked a worker, within a second every worker was blocked, and
/healthz queued behind them.  A Redis that refused connections failed open, but wrote a
traceback per request (2,707 in 6 s).  So the store is used like this:

- **Timeouts.**  Connecting and each reply get ``GRADIENT_RATELIMIT_STORAGE_TIMEOUT``
  (0.1 s) and redis-py retries nothing: a Redis next to the service answers in well under
  a millisecond, so 100 ms is an outage, not a slow day.
- **Fail open.**  Any failure of the store (a timeout, a refused connection, an error
  reply) lets the request through uncounted: the limit is not worth an outage.
- **A circuit breaker.**  After a failure this worker skips the store for
  ``RETRY_SECONDS`` (1 s); then one request tries it again while the others keep
  skipping.  A hung Redis costs one timeout a second per worker, not one per request.
- **One warning per outage** (per worker process, each finds out for itself), when it
  starts, naming the error; one line when it ends, with its duration and how many
  requests this worker let through uncounted.  No traceback: a store failure is an
  operational event, not a bug (a bug of ours is not a StorageError and still fails loudly).
- **Metrics.**  ``gradient_ratelimit_store_up`` is 1 while this worker's last use of the
  store worked and 0 during an outage (the minimum over live workers, so 0 when any worker
  sees one); ``gradient_ratelimit_uncounted_total`` counts the requests let through.

Requests that timed out while Redis was stopped may still be counted once it resumes: it
reads the command the closed connection had already sent.  A few, once; not worth more.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string

from . import metrics
from .logs import json_lines_logger

T = TypeVar("T")

#: how long a worker skips the store after it failed, before one request tries it again
RETRY_SECONDS = 1.0

log = json_lines_logger("gradient.ratelimit")


def redis_options(uri: str, timeout: float) -> dict:
    """redis-py's connection settings for a Redis URI; none for other stores (limits passes
    these keyword arguments to the client's constructor, and memcached's differ)."""
    scheme = uri.split("://", 1)[0]
    if scheme in ("redis", "rediss", "redis+unix", "valkey", "valkeys", "valkey+unix"):
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # no retries: redis-py's default for a URI today, stated so a new default
        # cannot multiply the wait
        return {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
    if scheme.startswith(("redis+", "valkey+")):  # sentinel, cluster: their nodes' sockets
        return {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    return {}


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


def storage(uri: str, timeout: float = 0.1) -> Storage:
    """The store a ``RATELIMIT_STORAGE_URI`` names; every failure of it is a StorageError.

    Building it does not connect: the first request does (limits registers its Lua
    scripts by their hash, locally).
    """
    if uri == "memory://":
        return SweptMemoryStorage()
    return storage_from_string(uri, wrap_exceptions=True, **redis_options(uri, timeout))


class GuardedStore:
    """A ``limits`` storage whose failures become ``None`` ("go through uncounted")."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self.clock = clock
        self._lock = threading.Lock()  # gthread workers serve requests from several threads
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._uncounted = 0
        metrics.RATELIMIT_STORE_UP.set(1)

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    def use(self, operation: Callable[[Storage], T]) -> T | None:
        """``operation(storage)``'s result, or None when the store failed or is being skipped."""
        if self._down_since is not None and not self._may_retry():
            return None
        try:
            result = operation(self.storage)
        except StorageError as error:
            self._failed(error)
            return None
        if self._down_since is not None:
            self._recovered()
        return result

    def _may_retry(self) -> bool:
        """During an outage: whether this request is the one that tries the store again."""
        with self._lock:
            if self._down_since is None:  # another thread just saw it answer
                return True
            now = self.clock()
            if now >= self._retry_at:
                self._retry_at = now + RETRY_SECONDS  # the others keep skipping meanwhile
                return True
            self._uncounted += 1
        metrics.RATELIMIT_UNCOUNTED.inc()
        return False

    def _failed(self, error: StorageError) -> None:
        metrics.RATELIMIT_UNCOUNTED.inc()
        with self._lock:
            now = self.clock()
            self._retry_at = now + RETRY_SECONDS
            self._uncounted += 1
            if self._down_since is not None:
                return
            self._down_since = now
        metrics.RATELIMIT_STORE_UP.set(0)
        cause = error.storage_error
        reason = f"{type(cause).__name__}: {cause}"[:200]
        log.warning(
            f"rate-limit storage failed ({reason}); /v1/ requests go through uncounted "
            f"until it answers, tried again every {RETRY_SECONDS:g} s",
            extra={
                "fields": {"event": "ratelimit_store_down", "pid": os.getpid(), "error": reason}
            },
        )

    def _recovered(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            seconds = round(self.clock() - self._down_since, 3)
            uncounted, self._uncounted, self._down_since = self._uncounted, 0, None
        metrics.RATELIMIT_STORE_UP.set(1)
        log.warning(
            f"rate-limit storage answers again after {seconds:g} s; "
            f"{uncounted} request(s) went through uncounted in this worker",
            extra={
                "fields": {
                    "event": "ratelimit_store_up",
                    "pid": os.getpid(),
                    "outage_seconds": seconds,
                    "uncounted": uncounted,
                }
            },
        )
