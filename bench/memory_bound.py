"""The memory bound, measured: each case at the bound (tests/memory_cases.py) priced, traced in
this process, and sent to real gunicorn workers, one after another and each to a fresh one.

    python -m bench.memory_bound            every case
    python -m bench.memory_bound search     the largest size of each case (tests/memory_cases.SIZES)
"""

from __future__ import annotations

import sys
import time

import orjson

from tests.memory_cases import (
    LIMIT,
    MAKERS,
    ORDER,
    SIZES,
    Case,
    case,
    largest,
    rss_peaks,
    start_worker,
    status_kib,
    thin_wide,
    traced,
    workers,
)


def main(argv: list[str]) -> None:
    """Print each case's estimate; what tracemalloc sees in this process from the cost check
    on ("traced") and over the whole request, parsing included ("whole", inflated by
    tracemalloc's own bookkeeping); a fresh worker's RSS growth; and a worker's RSS before
    and at its peak, the cases sent to it in turn (ORDER).  ``search``: sizes for SIZES."""
    from service import create_app
    from tests.conftest import stop_server

    client = create_app({"RATELIMIT_ENABLED": False}).test_client()
    if argv[:1] == ["search"]:
        print({name: largest(client, name) for name in MAKERS})
        return
    names = argv or ORDER
    cases = [case(name) for name in names]
    url, server = start_worker()
    try:
        (worker,) = workers(server.pid)
        idle = status_kib(worker, "VmRSS") / 1024
        in_turn = rss_peaks(url, worker, cases)
        refused = Case("finding 1", "/v1/gradients", orjson.dumps(thin_wide(3000)))
        started = time.perf_counter()
        ((before_refusal, peak_refusal),) = rss_peaks(url, worker, [refused], 422)
        refusal_seconds = time.perf_counter() - started
    finally:
        stop_server(server)
    fresh = []
    for one in cases:
        url, server = start_worker()
        try:
            (worker,) = workers(server.pid)
            fresh += rss_peaks(url, worker, [one])
        finally:
            stop_server(server)
    print(f"limit {LIMIT / 2**20:.0f} MiB; worker idle RSS {idle:.0f} MiB; all figures MiB")
    print(
        f"{'case':22s} {'size':>7s} {'body':>5s} {'estimate':>8s} {'traced':>6s} "
        f"{'whole':>5s} {'fresh worker':>12s} {'in turn: before':>15s} {'peak':>5s}"
    )
    for one, (before, peak), (idle_fresh, peak_fresh) in zip(cases, in_turn, fresh):
        t = traced(client, one)
        assert t.status == 200
        print(
            f"{one.name:22s} {SIZES[one.name]:7,d} {len(one.body) / 2**20:5.1f} "
            f"{t.estimate.bytes / 2**20:8.0f} {t.view / 2**20:6.0f} {t.whole / 2**20:5.0f} "
            f"{peak_fresh - idle_fresh:+12.0f} {before:15.0f} {peak:5.0f}"
        )
    print(
        f"the finding-1 network ({len(refused.body):,} bytes) refused over HTTP in "
        f"{refusal_seconds * 1000:.0f} ms, the worker's RSS {before_refusal:.0f} -> "
        f"{peak_refusal:.0f} MiB"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
