"""Issue 11, finding 4: a Redis that hangs or refuses does not hang the service or flood
its log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from limits.errors import StorageError

from service import create_app, ratestore
from service.config import Config
from service.ratelimit import EXTENSION
from tests.conftest import BIN, free_port, start_server, stop_server
from tests.problems import random_request
from tests.test_operations import NEURON

GUNICORN = [
    str(BIN / "gunicorn"),
    "--config",
    "python:service.gunicorn_conf",
    "service:create_app()",
]
SMALL = random_request(3, n_layers=2)


# -- a real redis-server this module may stop ----------------------------------------------


def start_redis() -> tuple[str, subprocess.Popen]:
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed: run `make system-deps`"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

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


@pytest.fixture
def redis_server():
    url, process = start_redis()
    yield url, process
    stop_redis(process)


def limit_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("X-RateLimit")}


def store_events(log: str) -> list[dict]:
    """The rate-limit store's outage lines (JSON lines among gunicorn's own)."""
    events = []
    for line in log.splitlines():
        if line.startswith("{") and '"event":"ratelimit_store_' in line:
            events.append(json.loads(line))
    return events


def per_worker(events: list[dict], event: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for line in events:
        if line["event"] == event:
            counts[line["pid"]] = counts.get(line["pid"], 0) + 1
    return counts


def log_so_far(process: subprocess.Popen) -> str:
    return os.pread(process.log.fileno(), 1 << 24, 0).decode(errors="replace")


# -- finding 4: a hung Redis -----------------------------------------------------------------


def test_a_stopped_redis_costs_a_timeout_not_the_service_and_logs_one_warning(redis_server):
    redis_url, redis_process = redis_server
    base_url, server = start_server(
        GUNICORN,
        env={
            "GRADIENT_RATELIMIT_DEFAULT": "30 per minute",
            "GRADIENT_RATELIMIT_STORAGE_URI": redis_url,
        },
    )
    # one new connection per request: gunicorn hands each to whichever worker is free
    try:
        before = requests.post(f"{base_url}/v1/gradients", json=SMALL, timeout=10)
        assert limit_headers(before)["X-RateLimit-Remaining"] == "29"

        redis_process.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        calls = [("get", "/healthz"), ("get", "/readyz"), ("post", "/v1/gradients")] * 2
        answers = []
        with ThreadPoolExecutor(len(calls)) as pool:
            # 3 s of rounds; before the timeouts each /v1/ request hung until SIGCONT and
            # /healthz queued behind them
            while time.monotonic() - stopped_at < 3:
                answers += pool.map(
                    lambda call: requests.request(
                        call[0], f"{base_url}{call[1]}", json=SMALL, timeout=2
                    ),
                    calls,
                )
        redis_process.send_signal(signal.SIGCONT)
        assert len(answers) >= 12 and {r.status_code for r in answers} == {200}
        # requests during the outage went through uncounted: no limit headers
        assert all(limit_headers(r) == {} for r in answers)

        # within a second or so each worker tries the store again and counts once more
        remaining = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = requests.post(f"{base_url}/v1/gradients", json=SMALL, timeout=10)
            if response.status_code == 429:
                break
            if "X-RateLimit-Remaining" in response.headers:
                remaining.append(int(response.headers["X-RateLimit-Remaining"]))
            started = per_worker(store_events(log_so_far(server)), "ratelimit_store_down")
            ended = per_worker(store_events(log_so_far(server)), "ratelimit_store_up")
            if remaining and started == ended:
                break  # every worker that saw the outage saw it end
            time.sleep(0.05)
        assert remaining == sorted(remaining, reverse=True) and remaining[-1] < 29
        while response.status_code != 429 and time.monotonic() < deadline:
            response = requests.post(f"{base_url}/v1/gradients", json=SMALL, timeout=10)
        assert response.status_code == 429  # the limit holds again
    finally:
        log = stop_server(server)

    assert "Traceback" not in log
    events = store_events(log)
    started = per_worker(events, "ratelimit_store_down")
    ended = per_worker(events, "ratelimit_store_up")
    assert 1 <= len(started) <= 2 and set(started.values()) == {1}  # one warning per worker
    assert started == ended  # and one line when it ended
    for line in events:
        if line["event"] == "ratelimit_store_down":
            assert line["level"] == "warning" and "TimeoutError" in line["error"]
        else:
            assert 2.5 < line["outage_seconds"] < 20 and line["uncounted"] >= 1


def test_a_refused_connection_is_one_warning_per_worker_not_a_traceback_per_request():
    base_url, server = start_server(
        GUNICORN,
        env={
            "GRADIENT_RATELIMIT_DEFAULT": "5 per minute",
            # nothing listens there
            "GRADIENT_RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}",
        },
    )
    try:
        statuses = [
            requests.post(f"{base_url}/v1/neuron", json=NEURON, timeout=10).status_code
            for _ in range(100)
        ]
    finally:
        log = stop_server(server)
    assert statuses == [200] * 100  # failed open: far past 5 a minute, all answered
    assert "Traceback" not in log
    started = per_worker(store_events(log), "ratelimit_store_down")
    assert 1 <= len(started) <= 2 and set(started.values()) == {1}
    assert log.count("rate-limit storage failed") == len(started)


def test_health_readiness_and_v1_answer_at_once_while_redis_is_stopped(redis_server):
    redis_url, redis_process = redis_server
    client = create_app({"RATELIMIT_STORAGE_URI": redis_url}).test_client()
    calls = [
        lambda: client.get("/healthz"),
        lambda: client.get("/readyz"),
        lambda: client.post("/v1/neuron", json=NEURON),
    ]
    redis_process.send_signal(signal.SIGSTOP)
    # in threads, so that a hang fails the test (at fixture teardown SIGCONT ends it)
    pool = ThreadPoolExecutor(1)
    try:
        for call in calls:
            # one 0.1 s timeout; before, the /v1/ request waited until Redis came back
            assert pool.submit(call).result(timeout=2).status_code == 200
    finally:
        pool.shutdown(wait=False)


class FailingStorage:
    """A store that fails every call and counts them."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = True
        self.counts: dict[str, int] = {}

    def incr(self, key, expiry, amount=1):
        self.calls += 1
        if self.failing:
            raise StorageError(ConnectionError("Connection refused."))
        self.counts[key] = self.counts.get(key, 0) + amount
        return self.counts[key]

    def get_expiry(self, key):
        return time.time() + 60


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_after_a_failure_the_store_is_skipped_for_a_second_then_tried_once(caplog):
    store, clock = FailingStorage(), Clock()
    guarded = ratestore.GuardedStore(store, clock=clock)

    def hit():
        return guarded.use(lambda s: s.incr("k", 60))

    assert [hit() for _ in range(50)] == [None] * 50
    assert store.calls == 1  # the 49 others skipped it
    clock.now += ratestore.RETRY_SECONDS
    assert [hit() for _ in range(50)] == [None] * 50
    assert store.calls == 2  # one retry a second

    store.failing = False
    clock.now += ratestore.RETRY_SECONDS + 0.5
    assert [hit() for _ in range(3)] == [1, 2, 3]
    lines = [r for r in caplog.records if r.name == "gradient.ratelimit"]
    assert [r.fields["event"] for r in lines] == ["ratelimit_store_down", "ratelimit_store_up"]
    assert lines[0].fields["error"] == "ConnectionError: Connection refused."
    assert lines[1].fields["outage_seconds"] == 2.5
    assert lines[1].fields["uncounted"] == 100
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in lines)


def test_the_metrics_say_whether_the_store_answers_and_what_went_uncounted():
    store, clock = FailingStorage(), Clock()
    guarded = ratestore.GuardedStore(store, clock=clock)
    client = create_app({"TESTING": True}).test_client()

    def scrape(name):
        text = client.get("/metrics").get_data(as_text=True)
        return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name))

    before = scrape("gradient_ratelimit_uncounted_total")
    for _ in range(3):
        guarded.use(lambda s: s.incr("k", 60))
    assert scrape("gradient_ratelimit_store_up") == 0
    assert scrape("gradient_ratelimit_uncounted_total") - before == 3
    store.failing = False
    clock.now += ratestore.RETRY_SECONDS
    guarded.use(lambda s: s.incr("k", 60))
    assert scrape("gradient_ratelimit_store_up") == 1


def test_the_store_never_sees_health_readiness_or_metrics():
    app = create_app({"RATELIMIT_DEFAULT": "1 per minute"})
    store = FailingStorage()
    app.extensions[EXTENSION].store.storage = store
    client = app.test_client()
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    assert store.calls == 0


def test_redis_gets_the_configured_timeouts_and_no_retries():
    client = ratestore.storage("redis://127.0.0.1:1", timeout=0.25).storage
    settings = client.connection_pool.connection_kwargs
    assert settings["socket_timeout"] == settings["socket_connect_timeout"] == 0.25
    assert settings["retry"].get_retries() == 0
    assert Config.from_env({})["RATELIMIT_STORAGE_TIMEOUT"] == 0.1
    env = {"GRADIENT_RATELIMIT_STORAGE_TIMEOUT": "0.5"}
    assert Config.from_env(env)["RATELIMIT_STORAGE_TIMEOUT"] == 0.5
