"""A client generated from /openapi.json by openapi-python-client parses every answer.

What a team integrating the service does first: point a generator at the document.
The client is generated once for the module into a temporary directory, installed
there with pip (no network: it needs nothing the test environment lacks), and
driven against the app in process (httpx's WSGI transport).  Every operation is
called with the README's inputs, for its success and for each error status the
service can produce; the generated models must parse each answer and write it
back unchanged, so nothing was dropped or fell through to the wrong model.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service import create_app
from tests.conftest import BIN
from tests.contract import served_contract
from tests.test_contract import BODIES, PROBLEM

PACKAGE = "gradient_openapi_client"
#: no post hooks: the generated code is not formatted (ruff need not be on PATH)
CONFIG = f"post_hooks: []\npackage_name_override: {PACKAGE}\n"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The generated package, imported from where pip installed it."""
    root = tmp_path_factory.mktemp("generated")
    (root / "openapi.json").write_text(json.dumps(served_contract().document))
    (root / "config.yml").write_text(CONFIG)
    run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(root / "openapi.json"),
            "--output-path",
            str(root / "client"),
            "--meta",
            "setup",
            "--config",
            str(root / "config.yml"),
        ]
    )
    site = root / "site"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(root / "client"),
        ]
    )
    sys.path.insert(0, str(site))
    try:
        importlib.import_module(f"{PACKAGE}.models")  # the package does not import it itself
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(site))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}"


def api(generated, name: str):
    """The generated module of one operation, by its operationId."""
    groups = {
        "compute_gradients": "gradients",
        "compute_neuron": "gradients",
        "check_submission": "autograder",
        "check_batch": "autograder",
        "create_exercise": "autograder",
        "get_health": "health",
        "get_readiness": "health",
    }
    return importlib.import_module(f"{PACKAGE}.api.{groups[name]}.{name}")


def client_for(generated, token: str | None = None, **config):
    transport = httpx.WSGITransport(app=create_app({"TESTING": True, **config}))
    arguments = {
        "base_url": "http://localhost",
        "raise_on_unexpected_status": True,  # an undocumented status raises
        "httpx_args": {"transport": transport},
    }
    if token is not None:
        return generated.AuthenticatedClient(token=token, **arguments)
    return generated.Client(**arguments)


#: operationId -> (path, request model)
OPERATIONS = {
    "compute_gradients": ("/v1/gradients", "GradientsRequest"),
    "compute_neuron": ("/v1/neuron", "NeuronRequest"),
    "check_submission": ("/v1/check", "CheckRequest"),
    "check_batch": ("/v1/check/batch", "CheckBatchRequest"),
    "create_exercise": ("/v1/exercises", "ExerciseRequest"),
}
ANSWERS = {  # operationId -> the generated model of its 200
    "compute_gradients": "GradientsResponse",
    "compute_neuron": "NeuronResponse",
    "check_submission": "CheckResponse",
    "check_batch": "CheckBatchResponse200",
    "create_exercise": "ExerciseResponse",
}
#: schema-valid requests the service refuses (422): a rule across fields
REFUSED = {
    "compute_gradients": {**BODIES["/v1/gradients"], "targets": [[2.0], [0.0]]},
    "compute_neuron": {**BODIES["/v1/neuron"], "activation": "tanh"},
    "check_submission": {**PROBLEM, "submission": {"layers": [None]}},
    "check_batch": {**BODIES["/v1/check/batch"], "targets": [[1.0, 0.0], [0.0, 1.0]]},
    "create_exercise": {**BODIES["/v1/exercises"], "activations": ["tanh"]},
}


def call(generated, client, operation: str, body: dict):
    """Call an operation with the generated request model; the parsed answer and its JSON."""
    model = getattr(generated.models, OPERATIONS[operation][1])
    response = api(generated, operation).sync_detailed(client=client, body=model.from_dict(body))
    return response.parsed, json.loads(response.content), int(response.status_code)


def parse_raw(generated, client, operation: str, raw: httpx.Response):
    """What the generated code makes of an answer to a request it could not have sent."""
    return api(generated, operation)._build_response(client=client, response=raw).parsed


def assert_parsed_whole(parsed, answer: dict, model) -> None:
    assert isinstance(parsed, model), type(parsed)
    assert parsed.to_dict() == answer


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_generated_client_parses_each_success(generated, operation):
    path = OPERATIONS[operation][0]
    parsed, answer, status = call(generated, client_for(generated), operation, BODIES[path])

    assert status == 200
    assert_parsed_whole(parsed, answer, getattr(generated.models, ANSWERS[operation]))


def test_the_generated_client_parses_a_passing_fields_null_diagnosis(generated):
    """The issue's first finding: a passing field made the generated client raise KeyError."""
    client = client_for(generated)
    gradients, _, _ = call(generated, client, "compute_gradients", PROBLEM)
    body = {**PROBLEM, "submission": {"loss": gradients.loss, "layers": [None, None]}}

    parsed, answer, _ = call(generated, client, "check_submission", body)

    assert answer["results"][0]["diagnosis"] is None
    assert_parsed_whole(parsed, answer, generated.models.CheckResponse)
    assert parsed.results[0].diagnosis is None


def test_the_generated_client_builds_norm_layers_and_parses_their_answer(generated):
    """A request model holding dense, batchnorm and layernorm layers (the oneOf keyed by type)
    is sent as written, and dgamma, dbeta and the updated running statistics parse."""
    body = {
        **PROBLEM,
        "layers": [
            PROBLEM["layers"][0],
            {
                "type": "batchnorm",
                "gamma": [1.0, 2.0],
                "beta": [[0.0, 0.5]],
                "variance": "unbiased",
                "running_mean": [0.0, 0.0],
                "running_var": [1.0, 1.0],
                "activation": "relu",
            },
            {"type": "layernorm", "gamma": [1.5, 0.5], "beta": [0.0, 0.1]},
            PROBLEM["layers"][1],
        ],
    }
    model = generated.models.GradientsRequest.from_dict(body)
    assert model.to_dict() == body

    parsed, answer, status = call(generated, client_for(generated), "compute_gradients", body)

    assert status == 200
    assert sorted(answer["layers"][1]) == ["a", "dbeta", "dgamma", "running_mean", "running_var"]
    assert_parsed_whole(parsed, answer, generated.models.GradientsResponse)


def test_the_generated_client_parses_a_gradescope_document(generated):
    body = {**BODIES["/v1/check"], "format": "gradescope"}

    parsed, answer, _ = call(generated, client_for(generated), "check_submission", body)

    assert_parsed_whole(parsed, answer, generated.models.GradescopeResults)


def test_the_generated_client_parses_a_batch_in_gradescope_format(generated):
    body = {**BODIES["/v1/check/batch"], "format": "gradescope"}

    parsed, answer, _ = call(generated, client_for(generated), "check_batch", body)

    assert [type(result).__name__ for result in parsed.results] == ["BatchGradescopeResult"] * 2
    assert_parsed_whole(parsed, answer, generated.models.CheckBatchResponse200)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_generated_client_parses_a_422(generated, operation):
    parsed, answer, status = call(generated, client_for(generated), operation, REFUSED[operation])

    assert status == 422
    assert_parsed_whole(parsed, answer, generated.models.ProblemDetails)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_generated_client_parses_401_and_sends_its_token(generated, operation):
    path = OPERATIONS[operation][0]
    keys = {"GRADIENT_API_KEYS": ("course-key",)}

    refused = call(generated, client_for(generated, "wrong", **keys), operation, BODIES[path])
    accepted = call(generated, client_for(generated, "course-key", **keys), operation, BODIES[path])

    assert (refused[2], accepted[2]) == (401, 200)
    assert_parsed_whole(refused[0], refused[1], generated.models.ProblemDetails)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_generated_client_parses_429(generated, operation):
    path = OPERATIONS[operation][0]
    client = client_for(generated, RATELIMIT_DEFAULT="1 per minute")

    statuses = [call(generated, client, operation, BODIES[path]) for _ in range(2)]

    assert [status for _, _, status in statuses] == [200, 429]
    assert_parsed_whole(statuses[1][0], statuses[1][1], generated.models.ProblemDetails)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_generated_client_parses_400_413_and_415(generated, operation):
    path = OPERATIONS[operation][0]
    client = client_for(generated, MAX_CONTENT_LENGTH=4096)
    http = client.get_httpx_client()
    raw = {
        400: http.post(path, content=b"{", headers={"Content-Type": "application/json"}),
        413: http.post(path, json={"padding": "x" * 5000}),
        415: http.post(path, content=b"x=1", headers={"Content-Type": "text/plain"}),
    }

    for status, response in raw.items():
        assert response.status_code == status
        parsed = parse_raw(generated, client, operation, response)
        assert_parsed_whole(parsed, response.json(), generated.models.ProblemDetails)


def test_the_generated_client_parses_health_and_readiness(generated, monkeypatch):
    import threading

    from service.worker import lifecycle

    client = client_for(generated)
    health = api(generated, "get_health").sync_detailed(client=client)
    ready = api(generated, "get_readiness").sync_detailed(client=client)
    monkeypatch.setattr(lifecycle, "_draining", threading.Event())
    lifecycle.mark_draining()
    draining = api(generated, "get_readiness").sync_detailed(client=client)

    assert_parsed_whole(health.parsed, {"status": "ok"}, generated.models.Health)
    assert_parsed_whole(ready.parsed, {"status": "ready"}, generated.models.Readiness)
    assert int(draining.status_code) == 503
    assert_parsed_whole(
        draining.parsed, json.loads(draining.content), generated.models.ProblemDetails
    )


def test_the_generated_functions_are_named_after_the_operation_ids(generated):
    names = {path.stem for path in Path(generated.__file__).parent.glob("api/*/*.py")}

    assert names - {"__init__"} == {*OPERATIONS, "get_health", "get_readiness"}
