"""The shipped topology under slow clients and failures: python -m bench.topology

Debian's nginx with deploy/nginx.conf in front of two gunicorn replicas (2 workers each)
sharing redis-server, started by tests/topology.py. Prints:
  - a normal POST /v1/gradients and GET /healthz through nginx, p50 and p99, in rounds that
    alternate no slow clients with 20 connections dribbling headers and 10 dribbling bodies
    (the issue's case), so machine drift hits both alike;
  - failed requests of a 4-client load while one replica is SIGKILLed, and while both are
    restarted one after the other (SIGTERM, start, back in rotation), and how many requests
    nginx passed on to the other replica.
Not run by `make bench` (it needs nginx and takes about a minute); a figure, not a test.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import requests

from tests.topology import (
    Load,
    Topology,
    dribble_body,
    dribble_header,
    gradients_request,
    redis_server,
)

ROUNDS = 5
REQUESTS_PER_ROUND = 40


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def normal_requests(url: str, body: dict, latencies: dict[str, list[float]], dribble) -> None:
    with requests.Session() as session:
        for _ in range(REQUESTS_PER_ROUND):
            dribble()
            for name, method, path, payload in (
                ("POST /v1/gradients", "POST", "/v1/gradients", body),
                ("GET /healthz", "GET", "/healthz", None),
            ):
                started = time.perf_counter()
                answer = session.request(method, f"{url}{path}", json=payload, timeout=30)
                latencies[name].append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text


def slow_clients(topology: Topology) -> None:
    body = gradients_request()
    port = topology.nginx.port
    quiet = {"POST /v1/gradients": [], "GET /healthz": []}
    slowed = {"POST /v1/gradients": [], "GET /healthz": []}
    for _ in range(ROUNDS):
        normal_requests(topology.url, body, quiet, lambda: None)
        connections = [dribble_header(port) for _ in range(20)]
        connections += [dribble_body(port) for _ in range(10)]
        next_byte = [time.monotonic()]

        def dribble(connections=connections, next_byte=next_byte) -> None:
            if time.monotonic() >= next_byte[0]:
                for connection in connections:
                    with contextlib.suppress(OSError):  # dropped: a slow machine took 10 s
                        connection.sendall(b" ")
                next_byte[0] += 0.3

        try:
            normal_requests(topology.url, body, slowed, dribble)
        finally:
            for connection in connections:
                connection.close()
    print(f"\nNormal requests through nginx, {ROUNDS} interleaved rounds of {REQUESTS_PER_ROUND}")
    print(f"  {'':<44} {'p50 ms':>8} {'p99 ms':>8}")
    for name in quiet:
        for label, samples in (("no slow clients", quiet), ("20 + 10 slow clients", slowed)):
            values = samples[name]
            print(
                f"  {name + ', ' + label:<44} {statistics.median(values) * 1e3:8.1f}"
                f" {percentile(values, 0.99) * 1e3:8.1f}"
            )


def failures(topology: Topology) -> None:
    body = gradients_request()
    direct = requests.post(f"{topology.replicas[0].url}/v1/gradients", json=body, timeout=30)
    expected = direct.json()
    print("\nA 4-client load of POST /v1/gradients through nginx")
    before = len(topology.nginx.attempts())
    with Load(topology.url, body, expected) as load:
        load.wait_for(40)
        topology.replicas[0].kill()
        load.wait_for(len(load.outcomes) + 200)
    report("one replica SIGKILLed (whole process group)", load, topology, before)
    topology.ensure_running()

    before = len(topology.nginx.attempts())
    with Load(topology.url, body, expected) as load:
        load.wait_for(40)
        for replica in topology.replicas:
            replica.terminate()
            replica.start()
            topology.wait_in_rotation(replica)
            load.wait_for(len(load.outcomes) + 40)
    report("rolling restart (SIGTERM, start, in rotation)", load, topology, before)


def report(name: str, load: Load, topology: Topology, before: int) -> None:
    passed_on = sum(
        1
        for _, tried, _, uri in topology.nginx.attempts()[before:]
        if uri == "/v1/gradients" and len(tried) > 1
    )
    print(
        f"  {name:<48} failed {len(load.failures())} of {len(load.outcomes)},"
        f" {passed_on} passed on to the other replica"
    )


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="gradient-bench-topology-"))
    try:
        with redis_server() as redis_url:
            topology = Topology(redis_url, scratch)
            try:
                topology.start()
                slow_clients(topology)
                failures(topology)
            finally:
                topology.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
