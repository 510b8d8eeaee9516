"""The shipped topology, run for real: Debian's nginx with deploy/nginx.conf in front of two
gunicorn replicas that share their rate limit through redis-server, as docker-compose.yml
runs them, here as separate processes on loopback ports (no Docker).

The test runs deploy/nginx.conf itself, changed in two places only (``render_site``): the
upstream's ``server gradient:8000 resolve ...`` line becomes one line per replica, and
``listen 8080`` a free loopback port. It wraps the file in a minimal main configuration
(``main_conf``), as the nginx image's /etc/nginx/nginx.conf includes conf.d/*.conf.
"""

from __future__ import annotations

import difflib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from service.config import Config
from tests.conftest import BIN, ROOT, free_port, start_server, stop_server

SITE_CONF = ROOT / "deploy" / "nginx.conf"
GUNICORN = [
    str(BIN / "gunicorn"),
    "--config",
    "python:service.gunicorn_conf",
    "service:create_app()",
]
NEURON = {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "mse"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "request_id"}


def nginx_binary() -> str:
    """Debian's nginx (`make system-deps`); /usr/sbin is often not on a user's PATH."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    assert found, "nginx is not installed: run `make system-deps` (Debian package nginx)"
    return found


# -- the configuration under test --------------------------------------------------------------

UPSTREAM_SERVER = re.compile(
    r"^(?P<indent>\s*)server gradient:8000 resolve(?P<params>[^;]*);$", re.MULTILINE
)
LISTEN = re.compile(r"^(?P<indent>\s*)listen 8080;$", re.MULTILINE)


def render_site(replicas: list[str], port: int) -> str:
    """deploy/nginx.conf with the upstream's server line made one line per replica address
    (same parameters, less ``resolve``: Debian's nginx 1.22 predates it) and a free port."""
    text = SITE_CONF.read_text()
    assert len(UPSTREAM_SERVER.findall(text)) == 1, "the upstream's server line changed"
    assert len(LISTEN.findall(text)) == 1, "the listen line changed"

    def servers(match: re.Match) -> str:
        return "\n".join(
            f"{match['indent']}server {address}{match['params']};" for address in replicas
        )

    text = UPSTREAM_SERVER.sub(servers, text)
    return LISTEN.sub(lambda match: f"{match['indent']}listen 127.0.0.1:{port};", text)


def main_conf(directory: Path, site: Path) -> str:
    """The main configuration around the site: every path nginx writes in ``directory``."""
    return f"""
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
worker_processes 1;
events {{ worker_connections 512; }}
http {{
    # one line per request: every replica tried, and what each answered
    log_format attempts '$status "$upstream_addr" "$upstream_status" $request_uri';
    access_log {directory}/access.log attempts;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {site};
}}
"""


class Nginx:
    """nginx running the rendered site in front of ``replicas`` (host:port strings)."""

    def __init__(self, directory: Path, replicas: list[str]) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = directory / "site.conf"
        site.write_text(render_site(replicas, self.port))
        self.main = directory / "main.conf"
        self.main.write_text(main_conf(directory, site))
        self.process: subprocess.Popen | None = None

    def command(self, *extra: str) -> list[str]:
        prefix, error_log = str(self.directory), str(self.directory / "error.log")
        return [nginx_binary(), "-p", prefix, "-e", error_log, "-c", str(self.main), *extra]

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command("-t"), capture_output=True, text=True, timeout=30, check=False
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command("-g", "daemon off;"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.error_log()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen in 10 s:\n{self.error_log()}")

    def stop(self) -> None:
        """A fast shutdown (SIGTERM); its whole group killed if it does not end in 10 s."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def attempts(self) -> list[tuple[int, list[str], list[str], str]]:
        """The access log so far: (status, replicas tried, their answers, URI) per request."""
        lines = []
        for line in (self.directory / "access.log").read_text().splitlines():
            status, addresses, statuses, uri = re.fullmatch(
                r'(\d+) "(.*)" "(.*)" (.*)', line
            ).groups()
            lines.append((int(status), addresses.split(", "), statuses.split(", "), uri))
        return lines

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def nginx_directory() -> Path:
    """A directory nginx's workers can use: when the tests run as root they run as nobody,
    and pytest's own temporary directories are private to root."""
    directory = Path(tempfile.mkdtemp(prefix="gradient-nginx-"))
    directory.chmod(0o755)
    return directory


# -- the replicas --------------------------------------------------------------------------------


class Replica:
    """One gunicorn replica on a fixed port (so it can be restarted where nginx expects it),
    in its own process group, with its own metrics (counts start at zero on each start)."""

    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.env = env
        self.scratch = scratch
        self.process: subprocess.Popen | None = None
        self.logs: list[str] = []

    def start(self) -> None:
        metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=self.scratch)
        _, self.process = start_server(
            GUNICORN,
            env={**self.env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir},
            port=self.port,
            new_session=True,
        )

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stops a replica: requests in flight finish."""
        self.logs.append(stop_server(self.process))
        self.process = None

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once, as a machine that dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.logs.append(stop_server(self.process))
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def answered(self, endpoint: str, status: str | None = None) -> int:
        """Requests this replica answered on ``endpoint`` since it started (its /metrics)."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        total = 0
        for line in text.splitlines():
            if not line.startswith("gradient_requests_total{"):
                continue
            if f'endpoint="{endpoint}"' not in line:
                continue
            if status is None or f'status="{status}"' in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total


class Topology:
    """nginx in front of two replicas sharing one Redis."""

    def __init__(self, redis_url: str, scratch: Path, **env: str) -> None:
        environment = {
            "WEB_CONCURRENCY": "2",
            "GRADIENT_RATELIMIT_STORAGE_URI": redis_url,
            "GRADIENT_RATELIMIT_DEFAULT": "1000000 per minute",
            "GRADIENT_TRUSTED_PROXIES": "1",  # nginx is the one proxy in front
            **env,
        }
        self.replicas = [Replica(environment, scratch) for _ in range(2)]
        self.nginx = Nginx(nginx_directory(), [replica.address for replica in self.replicas])
        self.url = self.nginx.url

    def start(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Replica.start, self.replicas))
        self.nginx.start()

    def stop(self) -> None:
        self.nginx.stop()
        shutil.rmtree(self.nginx.directory, ignore_errors=True)
        for replica in self.replicas:
            if replica.process is not None:
                replica.terminate()

    def wait_in_rotation(self, replica: Replica, timeout: float = 20.0) -> None:
        """Until nginx sends the (re)started replica requests again (a replica it saw fail
        is left out for fail_timeout, 5 s)."""
        before = replica.answered("/v1/neuron")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = requests.post(f"{self.url}/v1/neuron", json=NEURON, timeout=10)
            assert answer.status_code == 200, answer.text
            if replica.answered("/v1/neuron") > before:
                return
            time.sleep(0.2)
        raise AssertionError(f"nginx sent {replica.address} nothing in {timeout} s")

    def ensure_running(self) -> None:
        for replica in self.replicas:
            if not replica.running:
                replica.start()
                self.wait_in_rotation(replica)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """Debian's redis-server on a free loopback port, as a process of its own."""
    import redis

    server = shutil.which("redis-server")
    assert server, "redis-server is not installed: run `make system-deps`"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, socket_timeout=1).ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


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


# -- load --------------------------------------------------------------------------------------


def gradients_request() -> dict:
    """A few milliseconds of work (32 x 64 -> 64 -> 10), so a killed replica has some in flight."""
    rng = np.random.default_rng(11)
    return {
        "inputs": rng.normal(size=(32, 64)).tolist(),
        "targets": rng.normal(size=(32, 10)).tolist(),
        "layers": [
            {
                "weights": rng.normal(size=(64, 64)).tolist(),
                "biases": [0.0] * 64,
                "activation": "tanh",
            },
            {
                "weights": rng.normal(size=(64, 10)).tolist(),
                "biases": [0.0] * 10,
                "activation": "identity",
            },
        ],
        "loss": "mse",
    }


class Load:
    """``clients`` threads posting one pure /v1/gradients request through nginx, back to back,
    until stopped (at most ``limit`` requests); every outcome is kept."""

    def __init__(self, url: str, body: dict, expected: dict, clients: int = 4, limit: int = 3000):
        self.url, self.body, self.expected = f"{url}/v1/gradients", body, expected
        self.limit = limit
        self.stopping = threading.Event()
        self.outcomes: list[tuple[int | None, bool, str]] = []  # status, right answer, note
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client) for _ in range(clients)]

    def client(self) -> None:
        with requests.Session() as session:
            while not self.stopping.is_set() and len(self.outcomes) < self.limit:
                try:
                    answer = session.post(self.url, json=self.body, timeout=30)
                    right = answer.status_code == 200 and answer.json() == self.expected
                    outcome = (answer.status_code, right, "" if right else answer.text[:300])
                except requests.RequestException as error:
                    outcome = (None, False, repr(error)[:300])
                with self.lock:
                    self.outcomes.append(outcome)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < count:
            assert time.monotonic() < deadline, f"{len(self.outcomes)} of {count} in {timeout} s"
            time.sleep(0.02)

    def failures(self) -> list[tuple[int | None, bool, str]]:
        return [outcome for outcome in self.outcomes if not outcome[1]]


@pytest.fixture(scope="module")
def expected(topology) -> dict:
    """The answer, computed once by a replica directly (every answer must be this one)."""
    direct = requests.post(
        f"{topology.replicas[0].url}/v1/gradients", json=gradients_request(), timeout=30
    )
    assert direct.status_code == 200, direct.text
    return direct.json()


# -- the configuration ----------------------------------------------------------------------


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


def dribble_header(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection.sendall(b"POST /v1/gradients HTTP/1.1\r\nHost: gradient\r\nX-Slow: ")
    return connection


def dribble_body(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection.sendall(
        b"POST /v1/gradients HTTP/1.1\r\nHost: gradient\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{"
    )
    return connection


def closed_by_peer(connection: socket.socket, deadline: float) -> bool:
    """Whether the other end closes (or resets) the connection before ``deadline``."""
    while time.monotonic() < deadline:
        connection.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if connection.recv(65536) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def test_slow_clients_are_held_by_nginx_and_dropped_by_its_timeouts(cluster, expected):
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

    assert set(statuses) == {(200, True)}
    assert max(latencies) < 5.0, f"a normal request waited {max(latencies):.1f} s"
    # the replicas saw the normal requests and nothing of the slow ones
    assert served == len(latencies)
    assert dropped == [True] * 30
    assert time.monotonic() - opened > 9  # by the timeouts, not at once


# -- the shared rate limit -----------------------------------------------------------------------


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
