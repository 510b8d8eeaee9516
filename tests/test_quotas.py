"""Issue 16: per-student quotas (GRADIENT_CHECK_QUOTA) shared through Redis, and reveal
switched off service-wide (GRADIENT_ALLOW_REVEAL=false)."""

from __future__ import annotations

import re

import pytest
import redis
import requests

from service import create_app
from service.config import Config
from tests.conftest import BIN, free_port, start_redis, start_server, stop_redis, stop_server

PROBLEM = {
    "inputs": [[0.5, -1.0], [1.5, 2.0]],
    "targets": [[1.0], [0.0]],
    "layers": [
        {"weights": [[0.1, -0.2], [0.4, 0.5]], "biases": [[0.0, 0.1]], "activation": "sigmoid"},
        {"weights": [[0.7], [-0.8]], "biases": [[0.2]], "activation": "sigmoid"},
    ],
    "loss": "half_mse",
    "reduction": "sum",
}
SUBMISSION = {"layers": [None, {"db": [[0.1]]}]}
GUNICORN = [
    str(BIN / "gunicorn"),
    "--config",
    "python:service.operations.gunicorn_conf",
    "service:create_app()",
]


def check(student: str | None = "s1", assignment: str | None = "hw1", **options) -> dict:
    body = {**PROBLEM, "submission": SUBMISSION, **options}
    if student is not None:
        body["student"] = student
    if assignment is not None:
        body["assignment"] = assignment
    return body


@pytest.fixture
def redis_url():
    url, process = start_redis()
    yield url
    stop_redis(process)


def quota_app(redis_url: str | None = None, quota: str = "3 per hour", **config):
    settings = {"TESTING": True, "GRADIENT_CHECK_QUOTA": quota, **config}
    if redis_url:
        settings["RATELIMIT_STORAGE_URI"] = redis_url
    return create_app(settings)


def test_two_app_instances_share_one_students_quota_through_redis(redis_url):
    first, second = quota_app(redis_url).test_client(), quota_app(redis_url).test_client()

    statuses = [c.post("/v1/check", json=check()).status_code for c in (first, second, first)]
    refused = second.post("/v1/check", json=check())

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    # the counts are in Redis, not in either process
    keys = [key.decode() for key in redis.Redis.from_url(redis_url).keys("*quota*")]
    assert len(keys) == 1 and "hw1" in keys[0] and "s1" in keys[0]


def test_over_the_quota_is_a_429_problem_that_says_when_the_next_check_is_allowed():
    client = quota_app().test_client()
    for _ in range(3):
        assert client.post("/v1/check", json=check()).status_code == 200

    response = client.post("/v1/check", json=check())

    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    retry_after = int(response.headers["Retry-After"])
    assert 3590 <= retry_after <= 3600
    detail = response.get_json()["detail"]
    assert detail.startswith(
        "over the quota of 3 per 1 hour checks per student and assignment (GRADIENT_CHECK_QUOTA): "
        f"the next check is allowed in {retry_after} s (at "
    )
    assert re.search(r"\(at \d\d:\d\d:\d\d UTC\)\.$", detail)


@pytest.mark.parametrize("format", ["gradescope", "prairielearn", "junit"])
def test_over_the_quota_an_autograder_format_gets_a_grade_of_zero_that_says_when(format):
    """The grader records the attempt (score 0) instead of failing on a 429."""
    client = quota_app(quota="1 per hour").test_client()
    assert client.post("/v1/check", json=check(format=format)).status_code == 200

    response = client.post("/v1/check", json=check(format=format))

    assert response.status_code == 200
    if format == "junit":
        text = response.get_data(as_text=True)
        assert 'failures="1"' in text and "over the quota of 1 per 1 hour" in text
        return
    document = response.get_json()
    assert document["score"] == 0
    assert (
        "over the quota of 1 per 1 hour"
        in document["output" if format == "gradescope" else "message"]
    )
    if format == "prairielearn":
        assert document["gradable"] is False


def test_the_quota_counts_per_student_and_per_assignment_and_not_anonymous_checks():
    client = quota_app(quota="1 per hour").test_client()

    statuses = [
        client.post("/v1/check", json=body).status_code
        for body in (
            check("s1", "hw1"),
            check("s1", "hw1"),
            check("s2", "hw1"),
            check("s1", "hw2"),
            check("s1", None),
            check(None, "hw1"),
            check(None, "hw1"),
        )
    ]

    assert statuses == [200, 429, 200, 200, 200, 200, 200]


def test_ids_with_slashes_do_not_share_a_count():
    client = quota_app(quota="1 per hour").test_client()

    first = client.post("/v1/check", json=check("b/s1", "hw1"))
    second = client.post("/v1/check", json=check("s1", "hw1/b"))

    assert (first.status_code, second.status_code) == (200, 200)


def test_without_a_quota_setting_a_student_checks_as_often_as_they_like():
    client = create_app({"TESTING": True}).test_client()

    assert {client.post("/v1/check", json=check()).status_code for _ in range(12)} == {200}


def test_a_refused_check_does_not_count_and_a_rejected_request_is_not_counted():
    client = quota_app(quota="2 per hour").test_client()
    broken = {**check(), "submission": {"layers": [None, {"db": "x"}]}}

    assert client.post("/v1/check", json=broken).status_code == 422
    statuses = [client.post("/v1/check", json=check()).status_code for _ in range(4)]

    assert statuses == [200, 200, 429, 429]


def test_the_quota_is_shared_across_two_gunicorn_workers_and_both_say_so(redis_url):
    base_url, server = start_server(
        GUNICORN,
        {
            "WEB_CONCURRENCY": "2",
            "GRADIENT_CHECK_QUOTA": "4 per hour",
            "GRADIENT_RATELIMIT_STORAGE_URI": redis_url,
            "GRADIENT_RATELIMIT_DEFAULT": "100000 per minute",
        },
    )
    try:
        statuses = []
        for _ in range(12):  # a new connection each: the kernel spreads them over the workers
            response = requests.post(
                f"{base_url}/v1/check", json=check(), headers={"Connection": "close"}, timeout=30
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
    finally:
        log = stop_server(server)

    assert statuses == [200] * 4 + [429] * 8, log[-2000:]


def test_a_quota_whose_redis_is_down_lets_checks_through_like_the_rate_limit():
    dead = f"redis://127.0.0.1:{free_port()}"
    client = quota_app(dead, quota="1 per hour").test_client()

    statuses = [client.post("/v1/check", json=check()).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]


def test_each_batch_entry_counts_against_its_students_quota(redis_url):
    client = quota_app(redis_url, quota="2 per hour").test_client()
    assert client.post("/v1/check", json=check("s1", "hw1")).status_code == 200
    entries = [
        {"student": "s1", "submission": SUBMISSION},
        {"student": "s1", "submission": SUBMISSION},
        {"student": "s2", "submission": SUBMISSION},
        {"student": "s2", "submission": SUBMISSION, "assignment": "hw2"},
    ]

    response = client.post(
        "/v1/check/batch", json={**PROBLEM, "assignment": "hw1", "submissions": entries}
    )

    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["student"] for r in results] == ["s1", "s1", "s2", "s2"]
    assert [r["checked"] for r in results] == [1, 0, 1, 1]
    refused = results[1]
    assert 3590 <= refused["retry_after"] <= 3600
    assert refused["score"] == 0.0 and refused["results"] == []
    assert refused["detail"].startswith("over the quota of 2 per 1 hour checks per student")
    assert client.post("/v1/check", json=check("s1", "hw1")).status_code == 429


def test_reveal_switched_off_is_a_403_problem_that_says_so():
    client = create_app({"TESTING": True, "GRADIENT_ALLOW_REVEAL": False}).test_client()
    batch = {**PROBLEM, "reveal": True, "submissions": [{"student": "s", "submission": SUBMISSION}]}

    for path, body in (("/v1/check", check(reveal=True)), ("/v1/check/batch", batch)):
        response = client.post(path, json=body)

        assert response.status_code == 403
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["detail"] == (
            "reveal is switched off on this service (GRADIENT_ALLOW_REVEAL=false): it never "
            'answers expected values. Leave "reveal" out; each field still says whether it '
            "passed and which mistake explains it."
        )
    assert client.post("/v1/check", json=check()).status_code == 200


def test_reveal_is_on_by_default_and_switched_off_from_the_environment():
    assert Config.from_env({})["GRADIENT_ALLOW_REVEAL"] is True
    assert Config.from_env({"GRADIENT_ALLOW_REVEAL": "false"})["GRADIENT_ALLOW_REVEAL"] is False
    with pytest.raises(ValueError, match="GRADIENT_ALLOW_REVEAL must be true or false"):
        Config.from_env({"GRADIENT_ALLOW_REVEAL": "maybe"})
    client = create_app({"TESTING": True}).test_client()
    answer = client.post("/v1/check", json=check(reveal=True)).get_json()
    assert answer["results"][0]["expected"] == [[0.021412121246676824]]


def test_the_quota_setting_is_checked_at_start_up():
    assert Config.from_env({})["GRADIENT_CHECK_QUOTA"] is None
    assert Config.from_env({"GRADIENT_CHECK_QUOTA": "10 per hour"})["GRADIENT_CHECK_QUOTA"] == (
        "10 per hour"
    )
    with pytest.raises(ValueError, match="GRADIENT_CHECK_QUOTA must be a positive amount"):
        Config.from_env({"GRADIENT_CHECK_QUOTA": "lots"})


def test_the_document_lists_403_for_the_autograder_operations(client):
    document = client.get("/openapi.json").get_json()

    for path in ("/v1/check", "/v1/check/batch"):
        assert document["paths"][path]["post"]["responses"]["403"] == {
            "$ref": "#/components/responses/FORBIDDEN"
        }
    assert "403" not in document["paths"]["/v1/gradients"]["post"]["responses"]
