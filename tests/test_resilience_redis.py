"""Issue 11, findings 4 and 5: a Redis that hangs or refuses does not hang the service or
flood its log, and expensive work has its own per-client budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from limits.errors import StorageError

from service import create_app
from service.config import Config
from service.operations import ratestore
from service.operations.ratelimit import EXTENSION
from tests.conftest import BIN, free_port, start_redis, start_server, stop_redis, stop_server
from tests.problems import random_request
from tests.test_operations import NEURON, problem_body

GUNICORN = [
    str(BIN / "gunicorn"),
    "--config",
    "python:service.operations.gunicorn_conf",
    "service:create_app()",
]
SMALL = random_request(3, n_layers=2)


# -- a real redis-server this module may stop ----------------------------------------------


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


def sample(text: str, name: str) -> float:
    """An unlabelled metric's value in a Prometheus text exposition."""
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name))


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
    # and one line when it ended, from each worker that served a /v1/ request after it: the
    # end is noticed on a request, and which worker gets the next connection is the kernel's
    # choice, so a worker may see no request between the outage and the 429 below
    assert ended and set(ended.values()) == {1} and ended.keys() <= started.keys()
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
        metrics = requests.get(f"{base_url}/metrics", timeout=10).text
    finally:
        log = stop_server(server)
    assert statuses == [200] * 100  # failed open: far past 5 a minute, all answered
    # summed over both workers' files; the gauge is the minimum over live workers
    assert sample(metrics, "gradient_ratelimit_uncounted_total") == 100
    assert sample(metrics, "gradient_ratelimit_store_up") == 0
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
        return sample(client.get("/metrics").get_data(as_text=True), name)

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


# -- finding 5: expensive work ---------------------------------------------------------------


def gradient_check_request(n_in: int, hidden: int, batch: int) -> dict:
    """A two-layer network whose numerical check nudges n_in * hidden + 2 * hidden + 1
    parameters (about 0.5 s for 20, 100, 8 here)."""
    rng = np.random.default_rng(n_in)
    return {
        "inputs": rng.normal(size=(batch, n_in)).tolist(),
        "targets": rng.normal(size=(batch, 1)).tolist(),
        "layers": [
            {
                "weights": rng.normal(size=(n_in, hidden)).tolist(),
                "biases": [0.0] * hidden,
                "activation": "tanh",
            },
            {
                "weights": rng.normal(size=(hidden, 1)).tolist(),
                "biases": [0.0],
                "activation": "identity",
            },
        ],
        "loss": "half_mse",
        "gradient_check": True,
    }


def budget_app(**config):
    return create_app({"RATELIMIT_COMPUTE_SECONDS": "1 per minute", **config})


def test_gradient_checks_past_the_compute_budget_get_429_while_cheap_requests_go_through():
    client = budget_app().test_client()
    expensive = gradient_check_request(20, 100, 8)
    statuses = []
    while 429 not in statuses and len(statuses) < 20:  # about 0.5 s each, 1 s a minute
        statuses.append(client.post("/v1/gradients", json=expensive).status_code)
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200} and len(statuses) >= 2
    refused = client.post("/v1/gradients", json=gradient_check_request(2, 2, 1))
    assert refused.status_code == 429  # any gradient check, small ones too, until the reset
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    body = problem_body(refused)
    assert body["status"] == 429
    assert body["detail"].startswith("over the compute budget of 1 s of computation per 1 minute")
    assert "GRADIENT_RATELIMIT_COMPUTE_SECONDS" in body["detail"]
    # the same client's cheap requests still go through, counted by the request limit only
    cheap = [client.post("/v1/gradients", json=SMALL) for _ in range(3)]
    assert [r.status_code for r in cheap] == [200] * 3
    assert client.post("/v1/neuron", json=NEURON).status_code == 200


def test_small_gradient_checks_go_through_by_the_hundred():
    client = budget_app().test_client()
    small = gradient_check_request(2, 3, 2)
    assert {client.post("/v1/gradients", json=small).status_code for _ in range(100)} == {200}


def test_each_client_has_its_own_compute_budget():
    client = budget_app(GRADIENT_API_KEYS=("key-a", "key-b")).test_client()
    expensive = gradient_check_request(20, 100, 8)

    def post(key):
        headers = {"Authorization": f"Bearer {key}"}
        return client.post("/v1/gradients", json=expensive, headers=headers).status_code

    statuses = []
    while 429 not in statuses and len(statuses) < 20:
        statuses.append(post("key-a"))
    assert statuses[-1] == 429
    assert post("key-b") == 200


def test_a_request_ended_by_the_time_budget_is_charged_its_seconds():
    client = budget_app(GRADIENT_TIME_BUDGET_SECONDS=0.3).test_client()
    slow = gradient_check_request(30, 150, 16)  # about 1.5 s of checking, stopped at 0.3 s
    statuses = []
    while 429 not in statuses and len(statuses) < 20:
        statuses.append(client.post("/v1/gradients", json=slow).status_code)
    assert statuses[-1] == 429 and set(statuses[:-1]) == {422} and len(statuses) >= 3


def spend_the_budget(app) -> None:
    """Charge this test client's whole compute budget, as earlier requests would have."""
    limit = app.extensions[EXTENSION]
    key = limit.compute.key_for(limit.key_prefix, "addr:127.0.0.1", "compute")
    limit.store.storage.incr(key, 60, amount=limit.compute.amount * 1000)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/gradients", random_request(5, n_layers=3)),
        (
            "/v1/check",
            {**random_request(5, n_layers=3), "submission": {"loss": 0.5, "layers": [None] * 3}},
        ),
        (
            "/v1/exercises",
            {
                "seed": 1,
                "layer_sizes": [3, 4, 2],
                "activations": ["tanh", "sigmoid"],
                "loss": "bce",
            },
        ),
    ],
)
def test_requests_estimated_over_the_flop_threshold_are_metered(path, body):
    app = budget_app(GRADIENT_EXPENSIVE_FLOPS=10)
    spend_the_budget(app)
    response = app.test_client().post(path, json=body)
    assert response.status_code == 429
    assert "compute budget" in problem_body(response)["detail"]


def test_requests_under_the_flop_threshold_are_not_metered():
    app = budget_app()
    spend_the_budget(app)
    client = app.test_client()
    assert client.post("/v1/gradients", json=random_request(5, n_layers=3)).status_code == 200
    body = {**random_request(5, n_layers=3), "submission": {"loss": 0.5, "layers": [None] * 3}}
    assert client.post("/v1/check", json=body).status_code == 200


def test_the_compute_budget_and_flop_threshold_are_read_from_the_environment():
    env = {"GRADIENT_RATELIMIT_COMPUTE_SECONDS": "90 per hour", "GRADIENT_EXPENSIVE_FLOPS": "5e3"}
    with pytest.raises(ValueError, match="GRADIENT_EXPENSIVE_FLOPS must be a whole number"):
        Config.from_env(env)
    settings = Config.from_env({**env, "GRADIENT_EXPENSIVE_FLOPS": "5_000"})
    assert settings["RATELIMIT_COMPUTE_SECONDS"] == "90 per hour"
    assert settings["GRADIENT_EXPENSIVE_FLOPS"] == 5000
    defaults = Config.from_env({})
    assert defaults["RATELIMIT_COMPUTE_SECONDS"] == "30 per minute"
    assert defaults["GRADIENT_EXPENSIVE_FLOPS"] == 100_000_000
    with pytest.raises(ValueError, match="GRADIENT_RATELIMIT_COMPUTE_SECONDS must be a positive"):
        Config.from_env({"GRADIENT_RATELIMIT_COMPUTE_SECONDS": "0 per minute"})


def test_a_client_looping_gradient_checks_cannot_hold_every_worker(redis_server):
    redis_url, _ = redis_server
    # the finding: two gradient-check loops held both workers and 9 of 12 probes timed out.
    # One budget for the client, in Redis: with memory:// each worker keeps its own, and
    # which worker took each request decided how many were answered (up to twice the budget)
    budget = {
        "GRADIENT_RATELIMIT_COMPUTE_SECONDS": "2 per minute",
        "GRADIENT_RATELIMIT_STORAGE_URI": redis_url,
    }
    base_url, server = start_server(GUNICORN, env=budget)
    expensive = gradient_check_request(30, 150, 16)  # 0.6 to 1.5 s of checking each
    started = time.monotonic()
    first_refusal: list[float] = []

    def running() -> bool:
        # until 6 s after the client was first refused (40 s at most)
        end = first_refusal[0] + 6 if first_refusal else started + 40
        return time.monotonic() < end

    def loop() -> list[int]:
        statuses = []
        while running():
            response = requests.post(f"{base_url}/v1/gradients", json=expensive, timeout=30)
            statuses.append(response.status_code)
            if response.status_code == 429 and not first_refusal:
                first_refusal.append(time.monotonic())
                assert int(response.headers["Retry-After"]) > 0
        return statuses

    def probe(path: str) -> tuple[float, bool]:
        sent = time.monotonic()
        try:
            return sent, requests.get(f"{base_url}{path}", timeout=2).status_code == 200
        except requests.Timeout:
            return sent, False

    try:
        with ThreadPoolExecutor(2) as clients:
            loops = [clients.submit(loop) for _ in range(2)]
            probes = []
            while running():
                probes.append(probe("/healthz"))
                time.sleep(0.25)
            statuses = [status for done in loops for status in done.result()]
    finally:
        stop_server(server)
    assert first_refusal, "the client was never refused"
    # once refused, the client's requests are answered at once, and the requests it had
    # in flight then end within a few seconds: from there every probe answers
    late = [ok for sent, ok in probes if sent > first_refusal[0] + 3]
    assert len(late) >= 4 and all(late), probes
    assert statuses.count(200) <= 6  # 2 s of budget, plus what was in flight
