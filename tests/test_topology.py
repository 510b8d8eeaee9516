"""The shipped topology, run for real (tests/topology.py starts it): Debian's nginx with
deploy/nginx.conf in front of two gunicorn replicas sharing redis-server. Requests are
balanced; a replica killed, or restarted one after the other, under load costs no client a
request; slow clients stay in nginx; the rate limit holds across replicas; nginx's own
errors are problem+json.
"""

from __future__ import annotations

import difflib
import http.client
import json
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from service.config import Config
from tests.conftest import ROOT, free_port
from tests.topology import (
    NEURON,
    SITE_CONF,
    Load,
    Nginx,
    Topology,
    closed_by_peer,
    dribble_body,
    dribble_header,
    gradients_request,
    nginx_directory,
    redis_server,
    render_site,
)

PROBLEM_KEYS = {"type", "title", "status", "detail", "request_id"}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="gradient-topology-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def topology(redis_url, scratch) -> Iterator[Topology]:
    cluster = Topology(redis_url, scratch)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(topology) -> Topology:
    """The module's topology with both replicas up and in rotation (a test may kill one)."""
    topology.ensure_running()
    return topology


@pytest.fixture(scope="module")
def expected(topology) -> dict:
    """The answer, computed once by a replica directly (every answer must be this one)."""
    direct = requests.post(
        f"{topology.replicas[0].url}/v1/gradients", json=gradients_request(), timeout=30
    )
    assert direct.status_code == 200, direct.text
    return direct.json()


# -- the configuration -------------------------------------------------------------------------


def test_the_test_changes_only_the_upstream_servers_and_the_listen_port():
    original = SITE_CONF.read_text().splitlines()
    rendered = render_site(["127.0.0.1:1001", "127.0.0.1:1002"], 1003).splitlines()
    changes = [line for line in difflib.ndiff(original, rendered) if line.startswith(("- ", "+ "))]
    assert changes == [
        "-     server gradient:8000 resolve max_fails=1 fail_timeout=5s;",
        "+     server 127.0.0.1:1001 max_fails=1 fail_timeout=5s;",
        "+     server 127.0.0.1:1002 max_fails=1 fail_timeout=5s;",
        "-     listen 8080;",
        "+     listen 127.0.0.1:1003;",
    ]


def test_nginx_accepts_the_shipped_config():
    directory = nginx_directory()
    try:
        result = Nginx(directory, ["127.0.0.1:1001", "127.0.0.1:1002"]).test_config()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_compose_runs_this_file_on_an_nginx_that_knows_upstream_resolve():
    nginx = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    version = re.fullmatch(r"nginx:(\d+)\.(\d+)\.(\d+)(-alpine)?", nginx["image"])
    assert version, nginx["image"]
    assert tuple(map(int, version.groups()[:3])) >= (1, 27, 3)  # "resolve" in open source
    assert "http://127.0.0.1:8080/healthz" in nginx["healthcheck"]["test"]


# -- balancing and failures --------------------------------------------------------------------


def test_requests_are_balanced_over_both_replicas(cluster, expected):
    before = [replica.answered("/v1/gradients") for replica in cluster.replicas]
    with requests.Session() as session:
        answers = [
            session.post(f"{cluster.url}/v1/gradients", json=gradients_request(), timeout=30)
            for _ in range(40)
        ]
    after = [replica.answered("/v1/gradients") for replica in cluster.replicas]

    assert [answer.status_code for answer in answers] == [200] * 40
    assert all(answer.json() == expected for answer in answers)
    shares = [new - old for old, new in zip(before, after, strict=True)]
    assert sum(shares) == 40, shares
    assert min(shares) >= 10, f"round robin gave {shares}"


def test_a_body_over_nginx_memory_buffer_is_spooled_and_answered(cluster):
    # 2,000 x 64 inputs are about 2.6 MB of JSON: over client_body_buffer_size (1 MiB), so
    # nginx writes the body to a temporary file before passing it on
    body = gradients_request()
    rng = np.random.default_rng(3)
    body["inputs"] = rng.normal(size=(2000, 64)).tolist()
    body["targets"] = rng.normal(size=(2000, 10)).tolist()
    direct = requests.post(f"{cluster.replicas[1].url}/v1/gradients", json=body, timeout=30)
    proxied = requests.post(f"{cluster.url}/v1/gradients", json=body, timeout=30)
    assert proxied.status_code == 200, proxied.text
    assert proxied.json() == direct.json()


def retried(attempts: list[tuple[int, list[str], list[str], str]]) -> int:
    """Requests of /v1/gradients that nginx passed to more than one replica."""
    return sum(1 for _, tried, _, uri in attempts if uri == "/v1/gradients" and len(tried) > 1)


def record(request: pytest.FixtureRequest, load: Load, retries: int) -> None:
    """The figures, for the README (in a JUnit report: --junitxml=... -o junit_family=xunit1)."""
    request.node.user_properties += [
        ("requests", len(load.outcomes)),
        ("failed", len(load.failures())),
        ("retried_on_the_other_replica", retries),
    ]


def test_a_replica_killed_under_load_costs_no_client_a_request(cluster, expected, request):
    victim = cluster.replicas[0]
    logged_before = len(cluster.nginx.attempts())
    with Load(cluster.url, gradients_request(), expected) as load:
        load.wait_for(40)
        victim.kill()
        killed_at = len(load.outcomes)
        load.wait_for(killed_at + 100)
    retries = retried(cluster.nginx.attempts()[logged_before:])
    record(request, load, retries)

    assert not victim.running
    assert load.failures() == [], load.failures()[:5]
    assert len(load.outcomes) >= 140
    # the answers were right because nginx passed the victim's requests on, not by luck
    assert retries >= 1


def test_a_rolling_restart_under_load_fails_no_request(cluster, expected, request):
    logged_before = len(cluster.nginx.attempts())
    with Load(cluster.url, gradients_request(), expected) as load:
        load.wait_for(30)
        for replica in cluster.replicas:
            replica.terminate()
            replica.start()  # on the same port
            cluster.wait_in_rotation(replica)
            load.wait_for(len(load.outcomes) + 30)
    record(request, load, retried(cluster.nginx.attempts()[logged_before:]))
    assert load.failures() == [], load.failures()[:5]
    assert all("Traceback" not in log for replica in cluster.replicas for log in replica.logs)


# -- slow clients ------------------------------------------------------------------------------


def test_slow_clients_are_held_by_nginx_and_dropped_by_its_timeouts(cluster, expected, request):
    port, body = cluster.nginx.port, gradients_request()
    before = sum(replica.answered("/v1/gradients") for replica in cluster.replicas)
    opened = time.monotonic()
    headers = [dribble_header(port) for _ in range(20)]
    bodies = [dribble_body(port) for _ in range(10)]
    try:
        # 3 s of a byte every 0.3 s on each connection, and normal requests all along
        latencies, statuses = [], []
        next_byte = time.monotonic()
        while time.monotonic() - opened < 3:
            if time.monotonic() >= next_byte:
                for connection in headers:
                    connection.sendall(b"a")
                for connection in bodies:
                    connection.sendall(b" ")
                next_byte += 0.3
            started = time.monotonic()
            answer = requests.post(f"{cluster.url}/v1/gradients", json=body, timeout=30)
            latencies.append(time.monotonic() - started)
            statuses.append((answer.status_code, answer.json() == expected))
            health = requests.get(f"{cluster.url}/healthz", timeout=30)
            statuses.append((health.status_code, health.json() == {"status": "ok"}))
        served = sum(replica.answered("/v1/gradients") for replica in cluster.replicas) - before

        # then silence: nginx drops the headers 10 s after they began (client_header_timeout)
        # and the bodies 10 s after their last byte (client_body_timeout)
        deadline = time.monotonic() + 25
        dropped = [closed_by_peer(connection, deadline) for connection in headers + bodies]
    finally:
        for connection in headers + bodies:
            connection.close()

    request.node.user_properties += [
        ("normal_requests", len(latencies)),
        ("median_ms", round(1000 * float(np.median(latencies)), 1)),
        ("max_ms", round(1000 * max(latencies), 1)),
    ]
    assert set(statuses) == {(200, True)}
    assert max(latencies) < 5.0, f"a normal request waited {max(latencies):.1f} s"
    # the replicas saw the normal requests and nothing of the slow ones
    assert served == len(latencies)
    assert dropped == [True] * 30
    assert time.monotonic() - opened > 9  # by the timeouts, not at once


# -- the shared rate limit ---------------------------------------------------------------------


def test_the_rate_limit_is_shared_by_the_replicas_through_redis(redis_url, scratch):
    limited = Topology(
        redis_url, scratch, WEB_CONCURRENCY="1", GRADIENT_RATELIMIT_DEFAULT="5 per minute"
    )
    try:
        limited.start()
        answers = [
            requests.post(f"{limited.url}/v1/neuron", json=NEURON, timeout=10) for _ in range(12)
        ]
        per_replica = [
            (replica.answered("/v1/neuron", "200"), replica.answered("/v1/neuron", "429"))
            for replica in limited.replicas
        ]
    finally:
        limited.stop()

    assert [answer.status_code for answer in answers] == [200] * 5 + [429] * 7
    sixth = answers[5]
    assert sixth.headers["Content-Type"] == "application/problem+json"
    assert sixth.json()["detail"] == "over the rate limit of 5 per 1 minute"
    assert int(sixth.headers["Retry-After"]) > 0
    # both replicas answered, and both refused once the shared count was over
    assert sum(ok for ok, _ in per_replica) == 5
    assert sum(refused for _, refused in per_replica) == 7
    assert all(refused > 0 for _, refused in per_replica), per_replica


# -- nginx's own errors ------------------------------------------------------------------------


def exchange(port: int, raw: bytes) -> http.client.HTTPResponse:
    """Send raw bytes (requests would refuse to send most of these) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(raw)
        response = http.client.HTTPResponse(connection)
        response.begin()
        response.body = response.read()
        return response


def assert_problem(response: http.client.HTTPResponse, status: int, request_id: str) -> dict:
    assert response.status == status, response.body
    assert response.getheader("Content-Type") == "application/problem+json"
    assert response.getheader("X-Request-ID") == request_id
    problem = json.loads(response.body)
    assert set(problem) == PROBLEM_KEYS
    assert problem["type"] == "about:blank"
    assert problem["title"] == HTTPStatus(status).phrase
    assert problem["status"] == status
    assert problem["request_id"] == request_id
    assert 20 < len(problem["detail"]) < 250
    return problem


LONG = "a" * 9000  # over large_client_header_buffers (8 KiB)

NGINX_ERRORS = {
    "body-over-the-limit": (
        "POST /v1/gradients HTTP/1.1\r\nHost: x\r\nContent-Length: 33554433\r\n{id}\r\n",
        413,
        "33,554,432 bytes",
    ),
    "header-too-large": (
        # the id before the long header: nginx reads no further
        f"GET /healthz HTTP/1.1\r\nHost: x\r\n{{id}}X-Long: {LONG}\r\n\r\n",
        431,
        "header",
    ),
    "no-host-header": ("GET /healthz HTTP/1.1\r\n{id}\r\n", 400, "Host"),
    "nginx-internal-path": ("GET /_problem/400 HTTP/1.1\r\nHost: x\r\n{id}\r\n", 404, "/v1/"),
}


@pytest.mark.parametrize(("raw", "status", "fragment"), NGINX_ERRORS.values(), ids=NGINX_ERRORS)
def test_nginx_answers_its_own_errors_in_problem_json(cluster, raw, status, fragment):
    request_id = f"topology-{status}"
    raw = raw.format(id=f"X-Request-ID: {request_id}\r\n").encode()
    response = exchange(cluster.nginx.port, raw)
    assert fragment in assert_problem(response, status, request_id)["detail"]


def test_a_request_line_too_long_is_414_problem_json_with_nginx_request_id(cluster):
    # nginx stops at the request line: it never reads a client's X-Request-ID
    raw = f"GET /{LONG} HTTP/1.1\r\nHost: x\r\nX-Request-ID: unread\r\n\r\n"
    response = exchange(cluster.nginx.port, raw.encode())
    request_id = response.getheader("X-Request-ID")
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert "URL" in assert_problem(response, 414, request_id)["detail"]


def test_a_replica_errors_pass_through_nginx_unchanged(cluster):
    # error_page takes only nginx's own errors (proxy_intercept_errors is off)
    direct = requests.post(f"{cluster.replicas[0].url}/v1/nowhere", json={}, timeout=10)
    proxied = requests.post(f"{cluster.url}/v1/nowhere", json={}, timeout=10)
    assert proxied.status_code == direct.status_code == 404
    assert proxied.headers["Content-Type"] == "application/problem+json"
    assert {**proxied.json(), "request_id": ""} == {**direct.json(), "request_id": ""}

    invalid = requests.post(f"{cluster.url}/v1/neuron", json={**NEURON, "b": "0.1"}, timeout=10)
    assert invalid.status_code == 422
    assert "b" in invalid.json()["errors"]


def expect_continue(port: int, length: int) -> str:
    """The status line nginx answers to a body of ``length`` announced with 100-continue."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST /v1/gradients HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        return connection.recv(4096).split(b"\r\n", 1)[0].decode()


def test_nginx_body_limit_is_the_service_limit_to_the_byte(cluster):
    limit = Config.from_env({})["MAX_CONTENT_LENGTH"]
    assert expect_continue(cluster.nginx.port, limit) == "HTTP/1.1 100 Continue"
    assert expect_continue(cluster.nginx.port, limit + 1).startswith("HTTP/1.1 413")


def test_with_no_replica_answering_nginx_answers_502_in_problem_json():
    nobody = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    nginx = Nginx(nginx_directory(), nobody)
    try:
        nginx.start()
        response = exchange(
            nginx.port,
            b"POST /v1/neuron HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"X-Request-ID: nobody-home\r\n\r\n{}",
        )
    finally:
        nginx.stop()
        shutil.rmtree(nginx.directory, ignore_errors=True)
    assert "no replica" in assert_problem(response, 502, "nobody-home")["detail"]
