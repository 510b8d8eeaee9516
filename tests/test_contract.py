"""/openapi.json is exactly what the service does (issue 12).

Every answer a test receives through a Flask test client is validated against
the served document by tests/contract.py; the tests here make sure each status
and header of each operation is actually produced once, and pin down what the
document says where a generated client depends on it.
"""

from __future__ import annotations

import copy
import json
import threading

import pytest
from openapi_core.testing import MockRequest

from service import create_app
from service.worker import lifecycle
from tests.contract import Contract, ContractClient, served_contract

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
#: one valid body per operation, from the README
BODIES = {
    "/v1/gradients": {
        "inputs": [[0.5, -1.0], [1.5, 2.0]],
        "targets": [[1.0], [0.0]],
        "layers": [
            {
                "weights": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]],
                "biases": [0.0, 0.1, -0.1],
                "activation": "tanh",
            },
            {"weights": [[0.7], [-0.8], [0.9]], "biases": [[0.2]], "activation": "sigmoid"},
        ],
        "loss": "bce",
    },
    "/v1/neuron": {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "bce"},
    "/v1/check": {**PROBLEM, "submission": {"layers": [None, {"db": [[0.1], [-0.05]]}]}},
    "/v1/check/batch": {
        **PROBLEM,
        "submissions": [
            {"student": "s1", "submission": {"layers": [None, {"db": [[0.1], [-0.05]]}]}},
            {"student": "s2", "submission": {"layers": [None, {"db": "not numbers"}]}},
        ],
    },
    "/v1/exercises": {
        "seed": 7,
        "layer_sizes": [2, 3, 1],
        "activations": ["tanh", "sigmoid"],
        "loss": "bce",
    },
}
OPERATIONS = list(BODIES)
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def document() -> dict:
    return served_contract().document


def schemas(document: dict) -> dict:
    return document["components"]["schemas"]


# -- the gate itself ----------------------------------------------------------------------------


def test_every_test_client_validates_its_answers_against_the_document(client):
    assert isinstance(client, ContractClient)
    assert isinstance(create_app({"TESTING": True}).test_client(), ContractClient)


def test_the_gate_fails_an_answer_the_document_does_not_allow(client, document):
    """The issue's first finding: a passing field's null diagnosis against an enum without null."""
    loss = client.post("/v1/gradients", json=PROBLEM).get_json()["loss"]
    submission = {"loss": loss, "layers": [None, None]}
    answer = client.post("/v1/check", json={**PROBLEM, "submission": submission})
    assert answer.status_code == 200
    assert [r["diagnosis"] for r in answer.get_json()["results"]] == [None]

    before = copy.deepcopy(document)
    before["components"]["schemas"]["FieldResult"]["properties"]["diagnosis"] = {
        "type": "string",
        "nullable": True,
        "enum": ["wrong_values"],
    }
    with pytest.raises(AssertionError, match="None is not one of"):
        Contract(before).check(answer)  # openapi-core: the first answer of its kind

    gate = Contract(before)
    failing = {"loss": loss + 1, "layers": [None, None]}
    gate.check(client.post("/v1/check", json={**PROBLEM, "submission": failing}))
    with pytest.raises(AssertionError, match="None is not one of"):
        gate.check(answer)  # the cached validator: every later answer of that kind


def test_the_gate_fails_a_header_the_document_does_not_list(client, document):
    answer = client.post("/v1/neuron", json=BODIES["/v1/neuron"])
    without = copy.deepcopy(document)
    del without["paths"]["/v1/neuron"]["post"]["responses"]["200"]["headers"]["X-Request-ID"]

    with pytest.raises(AssertionError, match="X-Request-ID"):
        Contract(without).check(answer)


def test_the_gate_fails_a_route_the_document_does_not_describe(client):
    answer = client.get("/healthz")
    answer.request.path = "/v1/undocumented"  # as if the app had grown a route
    answer.status_code = 200

    with pytest.raises(AssertionError, match="does not describe it"):
        served_contract().check(answer)


# -- every status of every operation, produced and validated ------------------------------------


@pytest.mark.parametrize("path", OPERATIONS)
def test_each_operation_answers_200_as_documented(client, path):
    assert client.post(path, json=BODIES[path]).status_code == 200


@pytest.mark.parametrize("path", OPERATIONS)
def test_each_operation_answers_400_415_and_422_as_problem_json(client, path):
    not_json = client.post(path, data=b"{", content_type="application/json")
    not_an_object = client.post(path, json=[1, 2])
    wrong_type = client.post(path, data=b"x=1", content_type="text/plain")
    invalid = client.post(path, json={"unknown_field": 1})

    assert [not_json.status_code, not_an_object.status_code] == [400, 400]
    assert wrong_type.status_code == 415
    assert invalid.status_code == 422
    for answer in (not_json, not_an_object, wrong_type, invalid):
        assert answer.mimetype == PROBLEM_JSON


@pytest.mark.parametrize("path", OPERATIONS)
def test_each_operation_answers_413_when_the_body_is_too_large(path):
    client = create_app({"TESTING": True, "MAX_CONTENT_LENGTH": 64}).test_client()

    answer = client.post(path, json={"padding": "x" * 100})

    assert answer.status_code == 413
    assert answer.mimetype == PROBLEM_JSON


@pytest.mark.parametrize("path", OPERATIONS)
def test_each_operation_answers_401_with_the_bearer_challenge(path):
    client = create_app({"TESTING": True, "GRADIENT_API_KEYS": ("course-key",)}).test_client()

    missing = client.post(path, json=BODIES[path])
    wrong = client.post(path, json=BODIES[path], headers={"Authorization": "Bearer nope"})
    right = client.post(path, json=BODIES[path], headers={"Authorization": "Bearer course-key"})

    assert [missing.status_code, wrong.status_code, right.status_code] == [401, 401, 200]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.headers["WWW-Authenticate"] == "Bearer error=invalid_token"


@pytest.mark.parametrize("path", OPERATIONS)
def test_each_operation_answers_429_with_retry_after_and_the_limit_headers(path):
    client = create_app({"TESTING": True, "RATELIMIT_DEFAULT": "1 per minute"}).test_client()

    first, second = (client.post(path, json=BODIES[path]) for _ in range(2))

    assert [first.status_code, second.status_code] == [200, 429]
    assert first.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(second.headers["Retry-After"]) <= 60


def test_health_and_readiness_answer_their_documented_bodies(client, monkeypatch):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}

    monkeypatch.setattr(lifecycle, "_draining", threading.Event())
    lifecycle.mark_draining()
    draining = client.get("/readyz")

    assert draining.status_code == 503
    assert draining.mimetype == PROBLEM_JSON


def test_an_unknown_path_and_an_unknown_method_are_problem_json(client):
    missing, wrong_method = client.get("/v1/nothing"), client.get("/v1/gradients")

    assert [missing.status_code, wrong_method.status_code] == [404, 405]
    assert set(wrong_method.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


# -- requests: what the document accepts, the service accepts -----------------------------------


def document_accepts(path: str, body: dict) -> bool:
    request = MockRequest(
        "http://localhost", "post", path, data=json.dumps(body), content_type="application/json"
    )
    try:
        served_contract().openapi.validate_request(request)
    except Exception:
        return False
    return True


REFUSED = {
    "misspelled-submitted-field": (
        "/v1/check",
        {**PROBLEM, "submission": {"layers": [None, {"dbb": [[1.0]]}]}},
        "submission.layers.1.dbb",
    ),
    "submission-without-layers": (
        "/v1/check",
        {**PROBLEM, "submission": {"loss": 0.5}},
        "submission.layers",
    ),
    "1-D-inputs": (
        "/v1/gradients",
        {**BODIES["/v1/gradients"], "inputs": [0.5, -1.0]},
        "inputs",
    ),
    # 1-D targets are documented now (class labels for cross_entropy and svm); a 1-D
    # upstream is still parsed only to be refused with the shape rules' advice
    "1-D-upstream": (
        "/v1/gradients",
        {
            **{k: v for k, v in BODIES["/v1/gradients"].items() if k not in ("targets", "loss")},
            "upstream": [1.0, 0.0],
        },
        "upstream",
    ),
    "seed-7.0": ("/v1/exercises", {**BODIES["/v1/exercises"], "seed": 7.0}, "seed"),
    "batch_size-4.0": (
        "/v1/exercises",
        {**BODIES["/v1/exercises"], "batch_size": 4.0},
        "batch_size",
    ),
    "curve_points-9.0": (
        "/v1/neuron",
        {**BODIES["/v1/neuron"], "curve_points": 9.0},
        "curve_points",
    ),
}


@pytest.mark.parametrize("path", OPERATIONS)
def test_the_readme_requests_are_accepted_by_the_document_and_the_service(client, path):
    assert document_accepts(path, BODIES[path])
    assert client.post(path, json=BODIES[path]).status_code == 200


@pytest.mark.parametrize(("path", "body", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_a_request_the_service_refuses_is_refused_by_the_document_too(client, path, body, field):
    answer = client.post(path, json=body)

    assert answer.status_code == 422
    assert field in answer.get_json()["errors"]
    assert not document_accepts(path, body)


def test_a_submission_with_a_null_layer_is_accepted_by_both(client):
    body = {**PROBLEM, "submission": {"layers": [None, {"db": [[0.1]]}]}}

    assert document_accepts("/v1/check", body)
    assert client.post("/v1/check", json=body).status_code == 200


def test_class_labels_are_accepted_by_the_document_and_the_service(client):
    body = {
        **BODIES["/v1/gradients"],
        "targets": [2, 0],
        "layers": [{"weights": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]], "activation": "identity"}],
        "loss": "svm",
    }
    assert document_accepts("/v1/gradients", body)
    assert client.post("/v1/gradients", json=body).status_code == 200


def test_an_integer_field_sent_as_7_0_is_refused_with_how_to_write_it(client):
    answer = client.post("/v1/exercises", json={**BODIES["/v1/exercises"], "seed": 7.0})

    assert answer.get_json()["errors"] == {
        "seed": ["expected a whole number, got 7.0; write it without a decimal point (7)."]
    }


# -- what a generator reads ---------------------------------------------------------------------


def test_a_passing_fields_diagnosis_is_documented_as_a_name_or_null(document):
    diagnosis = schemas(document)["FieldResult"]["properties"]["diagnosis"]

    names, null = diagnosis["anyOf"]
    assert null == {"type": "string", "nullable": True, "enum": [None]}
    assert "wrong_values" in names["enum"]
    assert None not in names["enum"]


def test_the_v1_operations_need_a_bearer_key_when_keys_are_configured(document):
    keyed = create_app({"TESTING": True, "GRADIENT_API_KEYS": ("k",)}).test_client()
    with_keys = keyed.get("/openapi.json").get_json()

    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert with_keys["security"] == [{"bearerAuth": []}]
    assert document["security"] == [{"bearerAuth": []}, {}]  # no keys: optional
    for path in ("/healthz", "/readyz"):
        assert document["paths"][path]["get"]["security"] == []


def test_each_v1_operation_lists_every_error_status_as_problem_json(document):
    for path in OPERATIONS:
        responses = document["paths"][path]["post"]["responses"]
        assert {"200", "400", "401", "413", "415", "422", "429", "default"} <= set(responses)
        for status in ("400", "401", "413", "415", "422", "429", "default"):
            name = responses[status]["$ref"].rsplit("/", 1)[-1]
            assert PROBLEM_JSON in document["components"]["responses"][name]["content"]
    assert "503" in document["paths"]["/readyz"]["get"]["responses"]


def test_the_operations_have_ids_a_generator_names_functions_after(document):
    ids = {
        path: operation["operationId"]
        for path, item in document["paths"].items()
        for operation in item.values()
    }

    assert ids == {
        "/v1/gradients": "computeGradients",
        "/v1/neuron": "computeNeuron",
        "/v1/check": "checkSubmission",
        "/v1/check/batch": "checkBatch",
        "/v1/exercises": "createExercise",
        "/healthz": "getHealth",
        "/readyz": "getReadiness",
    }


def test_the_document_names_its_server_and_no_unused_schema(document):
    assert document["servers"] == [
        {"url": "/", "description": "the server this document is served from"}
    ]
    assert "PaginationMetadata" not in schemas(document)


def test_the_problem_title_example_is_what_the_service_sends(client, document):
    answer = client.post("/v1/neuron", json={})
    title = schemas(document)["ProblemDetails"]["properties"]["title"]

    assert answer.get_json()["title"] == title["example"] == "Unprocessable Entity"
