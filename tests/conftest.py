"""Fixtures: an in-process app and client (every answer checked against /openapi.json),
and a real gunicorn on a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from service import create_app
from tests.contract import ContractClient, served_contract

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def responses_match_the_published_contract():
    """Every app's test client validates each answer against the served /openapi.json."""
    served_contract()  # parsed once, before the first test
    Flask.test_client_class = ContractClient
    yield
    Flask.test_client_class = None


def pytest_terminal_summary(terminalreporter):
    checked = served_contract.cache_info().currsize and served_contract().checked
    if checked:
        terminalreporter.write_line(f"{checked} responses validated against /openapi.json")


@pytest.fixture
def app():
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(base_url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Poll /healthz until it answers 200. Refused connections and slow answers are both
    normal while the workers boot (on a busy machine an import can take seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or too busy starting to answer within the second
        time.sleep(0.1)
    raise RuntimeError(f"server at {base_url} did not become healthy in {timeout}s")


def launch(
    command: list[str], env: dict[str, str], *, new_session: bool = False
) -> subprocess.Popen:
    """Start a server process whose output goes to a file (an unread pipe would fill and block).

    ``new_session``: its own process group, so a test can kill it whole (os.killpg), as a
    machine or container that dies takes every process with it."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop_server)
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )
    process.log = log
    return process


def start_server(
    command: list[str],
    env: dict[str, str] | None = None,
    *,
    port: int | None = None,
    new_session: bool = False,
) -> tuple[str, subprocess.Popen]:
    """Start a server command with PORT set to ``port`` (a free one by default); return its
    URL once healthy."""
    port = port or free_port()
    environment = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2"}
    environment.update(env or {})
    process = launch(command, environment, new_session=new_session)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process)
    except BaseException:  # never leave a server running behind a failed start
        stop_server(process)
        raise
    return base_url, process


def stop_server(process: subprocess.Popen) -> str:
    """Stop it (SIGTERM, then SIGKILL after 15 s) and return everything it logged."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with process.log as log:
        log.seek(0)
        return log.read().decode(errors="replace")


def start_redis() -> tuple[str, subprocess.Popen]:
    """Debian's redis-server on a free loopback port, as a process of its own: its URL and
    process, once it answers a PING (``stop_redis`` ends it, stopped or not)."""
    import redis

    server = shutil.which("redis-server")
    assert server, "redis-server is not installed: run `make system-deps`"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return f"redis://127.0.0.1:{port}", process
        except redis.RedisError:
            if time.monotonic() > deadline:
                stop_redis(process)
                raise
            time.sleep(0.05)


def stop_redis(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGCONT)  # a stopped process handles SIGTERM only once resumed
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def live_server() -> Iterator[str]:
    """A real gunicorn serving the app, as the Dockerfile's command runs it."""
    base_url, process = start_server(
        [
            str(BIN / "gunicorn"),
            "--config",
            "python:service.operations.gunicorn_conf",
            "service:create_app()",
        ],
        # the suite sends thousands of requests from one address
        env={"GRADIENT_RATELIMIT_DEFAULT": "1000000 per minute"},
    )
    yield base_url
    stop_server(process)
