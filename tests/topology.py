"""The shipped topology as processes on loopback: Debian's nginx running deploy/nginx.conf
in front of gunicorn replicas that share their rate limit through redis-server, as
docker-compose.yml runs them (no Docker). Used by tests/test_topology.py and bench/topology.py.

deploy/nginx.conf runs as it is, changed in two places only (``render_site``): the
upstream's ``server gradient:8000 resolve ...`` line becomes one line per replica, and
``listen 8080`` a free loopback port. ``main_conf`` wraps it in a minimal main
configuration, as the nginx image's /etc/nginx/nginx.conf includes conf.d/*.conf.
"""

from __future__ import annotations

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
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import requests

from tests.conftest import BIN, ROOT, free_port, start_redis, start_server, stop_redis, stop_server

SITE_CONF = ROOT / "deploy" / "nginx.conf"
GUNICORN = [
    str(BIN / "gunicorn"),
    "--config",
    "python:service.operations.gunicorn_conf",
    "service:create_app()",
]
NEURON = {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "mse"}


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
        return [nginx_binary(), "-p", str(self.directory), "-c", str(self.main), *extra]

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


# -- the replicas ------------------------------------------------------------------------------


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


@contextmanager
def redis_server() -> Iterator[str]:
    """Debian's redis-server on a free loopback port, as a process of its own; its URL."""
    url, process = start_redis()
    try:
        yield url
    finally:
        stop_redis(process)


# -- load and slow clients ---------------------------------------------------------------------


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
