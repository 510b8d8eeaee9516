"""Slow clients against each worker model: python -m bench.slowclients (about two minutes).

For each model, a real gunicorn with the repo's config (two workers, loopback only):

- under slow clients: 20 connections sending their headers a byte a second and 10
  sending their body a byte a second (each reconnects when cut off), while one
  client sends a small /v1/gradients request and a /healthz in turn, each on a new
  connection with a 3 s timeout: p50 and p99 of the small request, and how many
  health checks were answered;
- compute-bound throughput without them: the medium request (784-128-10, batch 64)
  from 2 client threads with kept-alive connections, requests/s, measured in
  interleaved rounds and given as a ratio to the sync worker's.

Targets (issue 11): small-request p99 under 250 ms and every /healthz answered under
slow clients; throughput within 5% of sync (ratio >= 0.95).
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import sys
import threading
import time

import orjson
import requests

from .cases import MEDIUM, SMALL
from .http import Server

#: name -> gunicorn options given after the repo's config
MODELS = {
    "sync (before)": ("--worker-class", "sync", "--threads", "1"),
    "gthread, 4 threads": ("--worker-class", "gthread", "--threads", "4"),
    "gthread, 32 threads": ("--worker-class", "gthread", "--threads", "32"),
    "service.worker (now)": (),
}
HEADER_DRIBBLERS, BODY_DRIBBLERS = 20, 10
PROBE_SECONDS = 12.0  # longer than the read deadline (10 s): cut-offs and reconnections included
PROBE_TIMEOUT = 3.0
ROUNDS, ROUND_SECONDS = 8, 2.0
JSON = {"Content-Type": "application/json"}


class Dribblers:
    """Raw connections that send a byte a second, reconnecting when the server cuts them."""

    def __init__(self, port: int, headers: int, bodies: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.cut_off = 0  # connections the server closed
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.dribble, args=(index < headers,), daemon=True)
            for index in range(headers + bodies)
        ]

    def __enter__(self) -> Dribblers:
        for thread in self.threads:
            thread.start()
        time.sleep(1.5)  # every connection is open and has started
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)

    def dribble(self, in_headers: bool) -> None:
        head = (
            b"POST /v1/gradients HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        )
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    if in_headers:
                        slow = head + b"X-Padding: " + b"a" * 1000
                    else:
                        sock.sendall(head + b"Content-Length: 100000\r\n\r\n")
                        slow = b"{" + b" " * 99998
                    for byte in slow:
                        if self.stop.wait(1.0):
                            return
                        sock.sendall(bytes([byte]))
            except OSError:
                with self.lock:
                    self.cut_off += 1
                self.stop.wait(0.2)


def probe(url: str, seconds: float) -> tuple[list[float], int, int, int]:
    """Small requests and health checks in turn: (small latencies, small failures,
    health checks answered, health checks sent)."""
    body = orjson.dumps(SMALL.request())
    latencies, failures, healthy, checks = [], 0, 0, 0
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        start = time.perf_counter()
        try:
            answer = requests.post(
                url + "/v1/gradients", data=body, headers=JSON, timeout=PROBE_TIMEOUT
            )
            ok = answer.status_code == 200
        except requests.RequestException:
            ok = False
        if ok:
            latencies.append(time.perf_counter() - start)
        else:
            failures += 1
        checks += 1
        with contextlib.suppress(requests.RequestException):
            healthy += requests.get(url + "/healthz", timeout=PROBE_TIMEOUT).status_code == 200
        time.sleep(0.02)
    return latencies, failures, healthy, checks


def throughput(url: str, seconds: float) -> float:
    """Medium requests/s from 2 client threads, each on its own kept-alive connection."""
    body = orjson.dumps(MEDIUM.request())
    counts = [0, 0]
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                answer = session.post(url + "/v1/gradients", data=body, headers=JSON, timeout=60)
                assert answer.status_code == 200, answer.text[:300]
                counts[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(report) -> None:
    servers = {name: Server(*args, WEB_CONCURRENCY="2") for name, args in MODELS.items()}
    try:
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for server in servers.values():
            throughput(server.url, 0.5)  # warm up
        for _ in range(ROUNDS):
            for name, server in servers.items():
                rates[name].append(throughput(server.url, ROUND_SECONDS))
        baseline = sum(rates["sync (before)"])
        rows = {}
        for name, server in servers.items():
            with Dribblers(server.port, HEADER_DRIBBLERS, BODY_DRIBBLERS) as dribblers:
                latencies, failures, healthy, checks = probe(server.url, PROBE_SECONDS)
            rows[name] = (latencies, failures, healthy, checks, dribblers.cut_off)
            time.sleep(1.0)  # let the server finish with the closed connections
    finally:
        for server in servers.values():
            server.stop()

    report.figure(
        "model: small p50 / p99 (failed), healthz, cut off; throughput",
        f"under {HEADER_DRIBBLERS}+{BODY_DRIBBLERS} slow clients, {PROBE_SECONDS:.0f} s",
    )
    for name, (latencies, failures, healthy, checks, cut_off) in rows.items():
        if latencies:
            p50 = f"{statistics.median(latencies) * 1e3:7.1f} ms"
            p99 = f"{percentile(latencies, 0.99) * 1e3:7.1f} ms" if not failures else "timeout"
        else:
            p50 = p99 = "timeout"
        ratio = sum(rates[name]) / baseline
        report.figure(
            f"  {name}",
            f"{p50} / {p99:>10} ({failures}/{checks})  healthz {healthy}/{checks}"
            f"  cut {cut_off:3d}  {statistics.median(rates[name]):6.1f}/s = {ratio:.3f} x sync",
        )
    latencies, failures, healthy, checks, _ = rows["service.worker (now)"]
    p99 = percentile(latencies, 0.99) if latencies and not failures else float("inf")
    report.ratio("slow clients: small request p99, ms", p99 * 1e3, 250)
    report.ratio("slow clients: /healthz answered, fraction", healthy / max(checks, 1), 1.0, True)
    report.ratio(
        "compute-bound throughput / sync",
        sum(rates["service.worker (now)"]) / baseline,
        0.95,
        higher=True,
    )


if __name__ == "__main__":
    from .report import Report

    report = Report()
    report.section("Slow clients and throughput, by worker model (bench/slowclients.py)")
    started = time.perf_counter()
    run(report)
    print(f"\n{len(report.misses)} target(s) missed: {', '.join(report.misses) or 'none'}")
    print(f"total {time.perf_counter() - started:.0f} s")
    sys.exit(0)
