"""Operating the service: keys, rate limits (shared through a real Redis), metrics, logs,
readiness, and graceful failure of real gunicorn workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from service import create_app
from service.config import Config, api_keys
from service.operations import ratelimit
from service.worker import lifecycle
from tests.conftest import BIN, start_redis, start_server, stop_redis, stop_server
from tests.problems import gradient_check_request, random_request

NEURON = {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "bce"}
GUNICORN = [str(BIN / "gunicorn"), "--config", "python:service.operations.gunicorn_conf"]


def problem_body(response) -> dict:
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json() if callable(response.json) else response.json


# -- API keys --------------------------------------------------------------------------------


@pytest.fixture
def keyed_client():
    return create_app({"GRADIENT_API_KEYS": ("course-key-1", "course-key-2")}).test_client()


def test_without_keys_configured_the_api_is_open(client):
    assert client.post("/v1/neuron", json=NEURON).status_code == 200


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "an API key is required"),
        ({"Authorization": "Bearer wrong"}, "not valid"),
        ({"Authorization": "Basic course-key-1"}, "an API key is required"),
        ({"Authorization": "Bearer "}, "an API key is required"),
    ],
    ids=["missing", "wrong", "not-bearer", "empty"],
)
def test_a_missing_or_wrong_key_is_401_with_a_bearer_challenge(keyed_client, headers, fragment):
    response = keyed_client.post("/v1/neuron", json=NEURON, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert fragment in problem_body(response)["detail"]


@pytest.mark.parametrize("key", ["course-key-1", "course-key-2"])
def test_each_configured_key_is_accepted(keyed_client, key):
    response = keyed_client.post(
        "/v1/neuron", json=NEURON, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200


def test_a_key_in_the_url_is_never_accepted(keyed_client):
    for name in ("api_key", "key", "access_token"):
        response = keyed_client.post(f"/v1/neuron?{name}=course-key-1", json=NEURON)
        assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"])
def test_health_docs_and_metrics_stay_open(keyed_client, path):
    assert keyed_client.get(path).status_code == 200


def test_keys_come_from_the_variable_and_the_file(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# course keys\nfile-key-1\n\n  file-key-2  \n")
    env = {"GRADIENT_API_KEYS": "env-key, file-key-1", "GRADIENT_API_KEYS_FILE": str(keys_file)}
    assert api_keys(env) == ("env-key", "file-key-1", "file-key-2")
    assert Config.from_env(env)["GRADIENT_API_KEYS"] == ("env-key", "file-key-1", "file-key-2")


def test_keys_and_bodies_are_never_logged(keyed_client, capsys):
    keyed_client.post(
        "/v1/neuron",
        json={**NEURON, "activation": "secret-activation"},
        headers={"Authorization": "Bearer course-key-1"},
    )
    logged = capsys.readouterr().out
    assert "course-key-1" not in logged and "secret-activation" not in logged
    line = json.loads(logged.strip().splitlines()[-1])
    assert line["key_id"] and len(line["key_id"]) == 12


# -- rate limits -----------------------------------------------------------------------------


def limited_app(limit: str = "3 per minute", **config):
    return create_app({"RATELIMIT_DEFAULT": limit, **config})


def limit_headers(response) -> dict[str, str]:
    return {name: value for name, value in response.headers if name.startswith("X-RateLimit")}


def test_over_the_limit_is_429_problem_json_with_retry_after():
    client = limited_app().test_client()
    statuses = [client.post("/v1/neuron", json=NEURON).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.post("/v1/neuron", json=NEURON)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert problem_body(response)["status"] == 429


def test_health_is_never_rate_limited():
    client = limited_app("1 per minute").test_client()
    assert {client.get("/healthz").status_code for _ in range(5)} == {200}


def test_each_key_has_its_own_budget():
    client = limited_app("2 per minute", GRADIENT_API_KEYS=("key-a", "key-b")).test_client()

    def post(key):
        headers = {"Authorization": f"Bearer {key}"}
        return client.post("/v1/neuron", json=NEURON, headers=headers).status_code

    assert [post("key-a") for _ in range(3)] == [200, 200, 429]
    assert [post("key-b") for _ in range(2)] == [200, 200]


def test_an_unreachable_limit_store_lets_requests_through():
    client = limited_app("2 per minute", RATELIMIT_STORAGE_URI="redis://127.0.0.1:1").test_client()
    assert [client.post("/v1/neuron", json=NEURON).status_code for _ in range(3)] == [200] * 3


def test_an_unreachable_limit_store_is_logged_and_adds_no_limit_headers(caplog):
    client = limited_app("2 per minute", RATELIMIT_STORAGE_URI="redis://127.0.0.1:1").test_client()
    response = client.post("/v1/neuron", json=NEURON)
    assert response.status_code == 200
    assert limit_headers(response) == {}
    assert "rate-limit storage failed" in caplog.text


def test_limited_responses_say_the_limit_what_is_left_and_when_it_resets():
    client = limited_app("3 per minute").test_client()
    started = time.time()
    responses = [client.post("/v1/neuron", json=NEURON) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Limit"] for r in responses] == ["3"] * 4
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    resets = {int(r.headers["X-RateLimit-Reset"]) for r in responses}
    assert len(resets) == 1 and started < resets.pop() <= started + 61
    assert 0 < int(responses[-1].headers["Retry-After"]) <= 60
    assert problem_body(responses[-1])["detail"] == "over the rate limit of 3 per 1 minute"


def test_a_retry_after_is_only_sent_with_the_429():
    response = limited_app().test_client().post("/v1/neuron", json=NEURON)
    assert response.status_code == 200 and "Retry-After" not in response.headers


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_paths_outside_v1_carry_no_limit_headers(path):
    response = limited_app("1 per minute").test_client().get(path)
    assert response.status_code == 200
    assert limit_headers(response) == {}


def test_each_endpoint_has_its_own_budget():
    client = limited_app("1 per minute").test_client()
    assert [client.post("/v1/neuron", json=NEURON).status_code for _ in range(2)] == [200, 429]
    assert client.post("/v1/gradients", json=random_request(3)).status_code == 200


def test_requests_that_match_no_route_are_not_counted():
    client = limited_app("1 per minute").test_client()
    assert client.post("/v1/nowhere", json=NEURON).status_code == 404
    assert client.get("/v1/neuron").status_code == 405
    assert client.post("/v1/neuron", json=NEURON).status_code == 200


def test_a_failed_authentication_counts_against_the_address():
    client = limited_app("1 per minute", GRADIENT_API_KEYS=("key-a",)).test_client()
    assert [client.post("/v1/neuron", json=NEURON).status_code for _ in range(2)] == [401, 429]


def test_the_rate_limit_can_be_turned_off():
    client = limited_app("1 per minute", RATELIMIT_ENABLED=False).test_client()
    responses = [client.post("/v1/neuron", json=NEURON) for _ in range(3)]
    assert [r.status_code for r in responses] == [200] * 3
    assert limit_headers(responses[-1]) == {}


def test_the_in_process_store_starts_no_thread_per_request():
    client = limited_app().test_client()
    time.sleep(0.05)  # the store's constructor starts one short-lived timer; let it end
    before = threading.active_count()
    client.post("/v1/neuron", json=NEURON)
    assert threading.active_count() == before


def test_the_in_process_store_drops_counts_whose_window_is_over():
    store = ratelimit.storage("memory://")
    store.incr("gone", expiry=0.01)
    time.sleep(0.02)
    store.next_sweep = 0.0  # sweeps at most once a second; this one is due now
    store.incr("kept", expiry=60)
    assert set(store.expirations) == {"kept"}


@pytest.fixture(scope="module")
def redis_url():
    """A real Redis server on a free loopback port (Debian's redis-server)."""
    url, process = start_redis()
    yield url
    stop_redis(process)


def test_counts_in_redis_are_keyed_by_prefix_client_and_endpoint(redis_url):
    import redis

    # 7, not the 5 of the two-worker test below: the limit is part of the key
    client = limited_app("7 per minute", RATELIMIT_STORAGE_URI=redis_url).test_client()
    responses = [client.post("/v1/neuron", json=NEURON) for _ in range(2)]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["6", "5"]
    assert 0 < int(responses[-1].headers["X-RateLimit-Reset"]) - time.time() <= 61
    key = "LIMITS:LIMITER/gradient/addr:127.0.0.1/gradients.neuron/7/1/minute"
    assert redis.Redis.from_url(redis_url).get(key) == b"2"


def test_a_shared_limit_holds_across_two_workers_with_redis(redis_url):
    base_url, process = start_server(
        [*GUNICORN, "service:create_app()"],
        env={
            "WEB_CONCURRENCY": "2",
            "GRADIENT_RATELIMIT_DEFAULT": "5 per minute",
            "GRADIENT_RATELIMIT_STORAGE_URI": redis_url,
        },
    )
    try:
        # A new connection per request: gunicorn hands them to whichever worker is free.
        with ThreadPoolExecutor(4) as pool:
            responses = list(
                pool.map(
                    lambda _: requests.post(f"{base_url}/v1/neuron", json=NEURON, timeout=10),
                    range(12),
                )
            )
    finally:
        stop_server(process)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [429] * 7
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) > 0


# -- metrics and logs ------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{wanted}}}")


def test_metrics_count_requests_validation_failures_and_diagnoses(client):
    def scrape():
        return client.get("/metrics").get_data(as_text=True)

    before = scrape()
    client.post("/v1/neuron", json=NEURON)
    client.post("/v1/neuron", json={**NEURON, "b": "0.1"})
    client.post(
        "/v1/check",
        json={**random_request(3, n_layers=1), "submission": {"layers": [{"dW": [[0.0]]}]}},
    )
    after = scrape()

    def grew(name, **labels):
        try:
            old = metric(before, name, **labels)
        except AssertionError:
            old = 0.0
        return metric(after, name, **labels) - old

    assert grew("gradient_requests_total", endpoint="/v1/neuron", method="POST", status="200") == 1
    assert grew("gradient_validation_failures_total", endpoint="/v1/neuron", field="b") == 1
    assert grew("gradient_diagnoses_total", diagnosis="wrong_shape") == 1
    assert grew("gradient_request_duration_seconds_count", endpoint="/v1/neuron") == 2


def test_metrics_add_up_across_gunicorn_workers():
    base_url, process = start_server([*GUNICORN, "service:create_app()"])
    try:
        for _ in range(10):
            requests.post(f"{base_url}/v1/neuron", json=NEURON, timeout=10)
        text = requests.get(f"{base_url}/metrics", timeout=10).text
    finally:
        stop_server(process)
    assert (
        metric(text, "gradient_requests_total", endpoint="/v1/neuron", method="POST", status="200")
        == 10
    )


def test_one_json_log_line_per_request_with_the_request_id(client, capsys):
    response = client.post("/v1/neuron", json=NEURON, headers={"X-Request-ID": "grader-42"})
    assert response.headers["X-Request-ID"] == "grader-42"
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "grader-42"
    assert line["endpoint"] == "/v1/neuron" and line["status"] == 200
    assert line["request_bytes"] > 0 and line["response_bytes"] > 0
    assert line["duration_ms"] >= 0 and line["time"].endswith("+00:00")


def test_a_bad_request_id_is_replaced_and_problem_documents_carry_it(client):
    response = client.post(
        "/v1/neuron", json={**NEURON, "loss": "?"}, headers={"X-Request-ID": "bad id!"}
    )
    request_id = response.headers["X-Request-ID"]
    assert request_id != "bad id!" and len(request_id) == 32
    assert problem_body(response)["request_id"] == request_id


# -- readiness and graceful failure ------------------------------------------------------------


def test_ready_computes_and_turns_503_while_draining(client, monkeypatch):
    assert client.get("/readyz").get_json() == {"status": "ready"}
    monkeypatch.setattr(lifecycle, "_draining", threading.Event())
    lifecycle.mark_draining()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "shutting down" in problem_body(response)["detail"]


def test_the_time_budget_ends_a_long_computation_with_a_422_naming_it():
    client = create_app({"GRADIENT_TIME_BUDGET_SECONDS": 0.01}).test_client()
    request = random_request(4, n_layers=3) | {"gradient_check": True}
    request["layers"] = [
        {**layer, "weights": np.ones((20, 20)).tolist(), "biases": [0.0] * 20}
        for layer in request["layers"]
    ]
    request["inputs"] = np.ones((3, 20)).tolist()
    request["targets"] = np.ones((3, 20)).tolist()
    request["convention"], request["loss"] = "numpy", "mse"
    response = client.post("/v1/gradients", json=request)
    assert response.status_code == 422
    assert "GRADIENT_TIME_BUDGET_SECONDS" in problem_body(response)["detail"]


def slow_request() -> dict:
    """About a second of work."""
    return gradient_check_request(batch=64)


def test_sigterm_lets_the_request_in_flight_finish():
    base_url, process = start_server(
        [*GUNICORN, "service:create_app()"], env={"WEB_CONCURRENCY": "1"}
    )
    results = {}

    def post():
        results["response"] = requests.post(
            f"{base_url}/v1/gradients", json=slow_request(), timeout=60
        )

    worker = threading.Thread(target=post)
    worker.start()
    time.sleep(0.3)  # the request is being computed
    process.send_signal(signal.SIGTERM)
    worker.join(timeout=60)
    log = stop_server(process)
    assert results["response"].status_code == 200, log
    assert results["response"].json()["gradient_check"]["max_relative_error"] < 1e-5


def worker_pids(master: int) -> set[int]:
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return {int(pid) for pid in children.stdout.split()}


def test_a_killed_worker_is_replaced_and_the_service_keeps_answering():
    base_url, process = start_server(
        [*GUNICORN, "service:create_app()"], env={"WEB_CONCURRENCY": "2"}
    )
    try:
        before = worker_pids(process.pid)
        assert len(before) == 2
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        statuses = [
            requests.post(f"{base_url}/v1/neuron", json=NEURON, timeout=10).status_code
            for _ in range(20)
        ]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(worker_pids(process.pid) - {victim}) < 2:
            time.sleep(0.1)
        after = worker_pids(process.pid)
    finally:
        stop_server(process)
    assert statuses == [200] * 20
    assert victim not in after and len(after) == 2


def test_a_bounded_load_of_mixed_requests_gets_no_5xx_and_right_answers(live_server):
    valid = random_request(21, n_layers=2)
    expected = requests.post(f"{live_server}/v1/gradients", json=valid, timeout=10).json()
    invalid = {**valid, "targets": [1.0, 2.0]}
    stop_at = time.monotonic() + 3.0
    outcomes = []

    def client(index: int):
        session = requests.Session()
        while time.monotonic() < stop_at and len(outcomes) < 2000:
            body = valid if index % 2 else invalid
            response = session.post(f"{live_server}/v1/gradients", json=body, timeout=10)
            outcomes.append((body is valid, response.status_code, response.content))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(client, range(6)))
    assert outcomes
    assert all(status < 500 for _, status, _ in outcomes)
    for is_valid, status, content in outcomes:
        if is_valid:
            assert status == 200 and json.loads(content) == expected
        else:
            assert status == 422
