"""Slow and broken clients against a real gunicorn with the repo's config (service/worker/).

Issue 11, finding 3: two connections sending their headers a byte a second stopped the
service for 20 s; finding 8: gunicorn answered its own errors in HTML, SIGTERM left new
connections hanging, and the latency histogram left out the time a request waited.
"""

from __future__ import annotations

import itertools
import json
import select
import signal
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import requests
import yaml

from schemas.binary import encode
from service.operations import gunicorn_conf
from service.worker import ComputeSlot, ReadOnce
from tests.conftest import BIN, ROOT, start_server, stop_server
from tests.problems import gradient_check_request, random_request
from tests.test_cluster import manifests
from tests.test_operations import metric, worker_pids

GUNICORN = [
    str(BIN / "gunicorn"),
    "--config",
    "python:service.operations.gunicorn_conf",
    "service:create_app()",
]
#: the time budget ends the long request (below) after this many seconds, however fast the machine
LONG_SECONDS = 4
LONG_ENV = {
    "WEB_CONCURRENCY": "1",
    "GRADIENT_TIME_BUDGET_SECONDS": str(LONG_SECONDS),
    "GRADIENT_MAX_FLOPS": "1_000_000_000_000",
    "GRADIENT_RATELIMIT_DEFAULT": "1000000 per minute",
}


def long_request() -> dict:
    """Far more work than LONG_SECONDS, so the server's time budget ends it with a 422 after
    exactly that long."""
    return gradient_check_request(batch=2048)


@contextmanager
def server(**env: str):
    base_url, process = start_server(GUNICORN, env=env)
    logs: list[str] = []
    try:
        yield base_url, process, logs
    finally:
        logs.append(stop_server(process))


class InFlight(threading.Thread):
    """A request sent on its own thread; ``response`` (or ``error``) once it is answered."""

    def __init__(self, url: str, body: dict, **kwargs) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.kwargs = url, body, kwargs
        self.response: requests.Response | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.response = requests.post(self.url, json=self.body, timeout=60, **self.kwargs)
        except requests.RequestException as error:
            self.error = error


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Read one whole HTTP answer from a raw socket: (status, headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def raw_request(base_url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port_of(base_url)), timeout=10) as sock:
        sock.sendall(data)
        return read_answer(sock, timeout=10)


def problem(headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"] == "application/problem+json"
    document = json.loads(body)
    assert set(document) == {"type", "title", "status", "detail"}
    return document


class Dribblers:
    """Raw connections sending a request a byte a second: some in their headers, some in
    their body. Bounded: they stop, and their sockets close, when the block ends."""

    HEAD = b"POST /v1/gradients HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"

    def __init__(self, base_url: str, in_headers: int, in_body: int, interval: float = 1.0):
        self.address = ("127.0.0.1", port_of(base_url))
        self.interval = interval
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.dribble, args=(i < in_headers,), daemon=True)
            for i in range(in_headers + in_body)
        ]

    def __enter__(self) -> Dribblers:
        for thread in self.threads:
            thread.start()
        time.sleep(1.5)  # every connection is open and has sent its first bytes
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def dribble(self, in_headers: bool) -> None:
        with socket.create_connection(self.address, timeout=5) as sock:
            if in_headers:
                rest = self.HEAD + b"X-Padding: " + b"a" * 100
            else:
                sock.sendall(self.HEAD + b"Content-Length: 1000\r\n\r\n")
                rest = b"{" + b" " * 998
            for byte in rest:
                if self.stop.wait(self.interval):
                    return
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    return


def dribble_until_answered(sock: socket.socket, rest: bytes, within: float):
    """Send ``rest`` a byte every 0.2 s until the server answers; its answer and when."""
    started = time.monotonic()
    for byte in rest:
        if select.select([sock], [], [], 0.2)[0]:
            return read_answer(sock, timeout=5), time.monotonic() - started
        assert time.monotonic() - started < within, "the server never cut the slow client off"
        sock.sendall(bytes([byte]))
    raise AssertionError("the whole request was sent before the server answered")


# -- finding 3: slow clients ---------------------------------------------------------------------


def test_dribbling_clients_stop_neither_health_checks_nor_small_requests():
    small = random_request(3)
    answers = []
    with (
        server(GRADIENT_RATELIMIT_DEFAULT="1000000 per minute") as (base_url, _, _),
        Dribblers(base_url, in_headers=20, in_body=10),
    ):
        for _ in range(5):
            answers.append(requests.get(f"{base_url}/healthz", timeout=2).status_code)
            answers.append(
                requests.post(f"{base_url}/v1/gradients", json=small, timeout=2).status_code
            )
    assert answers == [200] * 10


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_client_sending_too_slowly_is_cut_off_with_a_408(where):
    head = b"POST /v1/gradients HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with (
        server(GUNICORN_READ_TIMEOUT="1") as (base_url, _, _),
        socket.create_connection(("127.0.0.1", port_of(base_url)), timeout=10) as sock,
    ):
        if where == "headers":
            sock.sendall(head)
            rest = b"X-Padding: " + b"a" * 1000
        else:
            sock.sendall(head + b"Content-Length: 1000\r\n\r\n")
            rest = b"{" + b" " * 998
        (status, headers, body), after = dribble_until_answered(sock, rest, within=10)
        assert sock.recv(1) == b""  # and the connection is closed
    assert status == 408
    assert problem(headers, body)["status"] == 408
    assert "GUNICORN_READ_TIMEOUT" not in body.decode()  # says what to do, not our settings
    assert after < 10


def test_health_answers_while_the_only_worker_computes():
    with server(**LONG_ENV) as (base_url, _, _):
        long = InFlight(f"{base_url}/v1/gradients", long_request())
        long.start()
        time.sleep(1.0)  # the long request is being parsed or computed
        health = requests.get(f"{base_url}/healthz", timeout=3)
        still_computing = long.is_alive()
        long.join(timeout=30)
    assert health.status_code == 200 and still_computing
    assert long.response.status_code == 422  # the time budget ended it
    assert "GRADIENT_TIME_BUDGET_SECONDS" in long.response.json()["detail"]


def test_a_client_that_never_reads_its_answer_frees_the_worker():
    rng = np.random.default_rng(1)
    sizes = (784, 512, 512, 10)
    big = {
        "inputs": encode(rng.normal(size=(1024, 784))),
        "targets": encode(rng.normal(size=(1024, 10))),
        "layers": [
            {
                "weights": encode(rng.normal(size=(a, b))),
                "biases": encode(np.zeros(b)),
                "activation": "tanh",
            }
            for a, b in itertools.pairwise(sizes)
        ],
        "loss": "mse",
        "encoding": "base64",
    }
    body = json.dumps(big).encode()
    env = {
        **LONG_ENV,
        "GRADIENT_TIME_BUDGET_SECONDS": "60",
        "GUNICORN_SEND_TIMEOUT": "1",
        "GUNICORN_MIN_TRANSFER_RATE": "100000000",
    }
    with server(**env) as (base_url, _, _), socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port_of(base_url)))
        sock.sendall(
            b"POST /v1/gradients HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # never read: the answer (tens of MB) stays unsent past the send timeout
        small = requests.post(f"{base_url}/v1/gradients", json=random_request(3), timeout=20)
    assert small.status_code == 200


# -- finding 8: gunicorn's own answers, SIGTERM, latency ------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
    ],
    ids=[
        "header-too-large",
        "request-line-too-long",
        "bad-request-line",
        "bad-version",
        "bad-header",
    ],
)
def test_gunicorns_own_refusals_are_bounded_problem_json(live_server, request_bytes, status):
    answer_status, headers, body = raw_request(live_server, request_bytes)
    document = problem(headers, body)
    assert answer_status == status and document["status"] == status
    assert document["title"] and len(document["detail"]) < 300
    assert b"a" * 100 not in body  # the client's input is never echoed at length


def test_at_sigterm_readiness_turns_503_then_new_connections_are_refused_while_work_finishes():
    env = {**LONG_ENV, "GRADIENT_TIME_BUDGET_SECONDS": "8", "GUNICORN_DRAIN_SECONDS": "2"}
    with server(**env) as (base_url, process, _):
        long = InFlight(f"{base_url}/v1/gradients", long_request())
        long.start()
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        ready = requests.get(f"{base_url}/readyz", timeout=2)
        refused = False
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port_of(base_url)), timeout=1).close()
                time.sleep(0.1)
            except ConnectionRefusedError:
                refused = True
        still_computing = long.is_alive()
        long.join(timeout=30)
        process.wait(timeout=30)
    assert ready.status_code == 503
    assert ready.headers["Content-Type"] == "application/problem+json"
    assert "shutting down" in ready.json()["detail"]
    assert refused and still_computing
    assert long.response is not None and long.response.status_code == 422  # it finished


def test_time_spent_waiting_behind_another_request_is_in_its_latency():
    with server(**LONG_ENV) as (base_url, _, logs):
        long = InFlight(f"{base_url}/v1/gradients", long_request())
        long.start()
        time.sleep(1.0)
        queued = requests.post(
            f"{base_url}/v1/gradients",
            json=random_request(3),
            headers={"X-Request-ID": "queued-behind-long"},
            timeout=30,
        )
        long.join(timeout=30)
        scraped = requests.get(f"{base_url}/metrics", timeout=5).text
    assert queued.status_code == 200
    (line,) = [
        json.loads(line)
        for line in logs[0].splitlines()
        if '"queued-behind-long"' in line and line.startswith("{")
    ]
    assert line["queued_ms"] > 1000 and line["duration_ms"] >= line["queued_ms"]
    # both requests took over a second, as their clients saw it
    labels = {"endpoint": "/v1/gradients"}
    assert metric(scraped, "gradient_request_duration_seconds_count", **labels) == 2
    assert metric(scraped, "gradient_request_duration_seconds_bucket", **labels, le="1.0") == 0


def test_a_computation_past_gunicorns_timeout_gets_a_500_and_its_worker_replaced():
    env = {**LONG_ENV, "GUNICORN_TIMEOUT": "3", "GRADIENT_TIME_BUDGET_SECONDS": "30"}
    with server(**env) as (base_url, process, _):
        (before,) = worker_pids(process.pid)
        long = InFlight(f"{base_url}/v1/gradients", long_request())
        long.start()
        long.join(timeout=20)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and worker_pids(process.pid) in (set(), {before}):
            time.sleep(0.2)
        after = worker_pids(process.pid)
        health = requests.get(f"{base_url}/healthz", timeout=10)
    assert long.response.status_code == 500
    assert long.response.headers["Content-Type"] == "application/problem+json"
    assert "GUNICORN_TIMEOUT" in long.response.json()["detail"]
    assert len(after) == 1 and before not in after and health.status_code == 200


def test_the_shipped_grace_periods_outlast_the_drain_and_the_graceful_timeout():
    # graceful_timeout counts from the SIGTERM, the drain included
    assert 0 < gunicorn_conf.worker_class.settings.drain_seconds < gunicorn_conf.graceful_timeout
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert int(compose["services"]["gradient"]["stop_grace_period"].rstrip("s")) > (
        gunicorn_conf.graceful_timeout
    )
    pod = manifests()["Deployment/gradient-service"]["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + gunicorn_conf.graceful_timeout


# -- the worker's parts ---------------------------------------------------------------------------


def test_computations_wait_for_the_slot_in_arrival_order():
    slot, order = ComputeSlot(), []
    assert slot.acquire() is False  # free: taken without waiting

    def compute(name: str) -> None:
        assert slot.acquire() is True
        order.append(name)
        slot.release()

    waiting = []
    for name in "abcd":
        waiting.append(threading.Thread(target=compute, args=(name,)))
        waiting[-1].start()
        while len(slot._waiters) < len(waiting):  # each is queued before the next arrives
            time.sleep(0.001)
    assert slot.busy and slot.contended
    slot.release()
    for thread in waiting:
        thread.join(timeout=5)
    assert order == ["a", "b", "c", "d"] and not slot.busy


def test_a_body_read_whole_is_handed_over_not_kept():
    data = b'{"x": 1}' * 1000
    body = ReadOnce(data)
    assert body.read() is data  # no copy
    assert body.read() == b""  # and nothing kept
    pieces = ReadOnce(b"abcdef")
    assert [pieces.read(4), pieces.read(4), pieces.read(4)] == [b"abcd", b"ef", b""]
