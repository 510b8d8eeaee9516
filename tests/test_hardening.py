"""The boundary holds against bodies that break a plain Flask + marshmallow stack."""

from __future__ import annotations

import json

import pytest
import requests

from tests.conftest import BIN, start_server, stop_server

NEURON = {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "bce"}
JSON = {"Content-Type": "application/json"}


def assert_problem(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    # requests' Response.json is a method, Werkzeug's test response's a property
    body = response.json() if callable(response.json) else response.json
    assert body["status"] == status
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    return body


@pytest.fixture(scope="module")
def small_server():
    """A real gunicorn with a 1,000-byte body limit."""
    base_url, process = start_server(
        [
            str(BIN / "gunicorn"),
            "--config",
            "python:service.operations.gunicorn_conf",
            "service:create_app()",
        ],
        env={"GRADIENT_MAX_BODY_BYTES": "1000", "WEB_CONCURRENCY": "1"},
    )
    yield base_url
    stop_server(process)


def chunks(data: bytes, size: int = 100):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_chunked_body_over_the_limit_is_413_not_truncated(small_server):
    padded = (json.dumps(NEURON) + " " * 5000).encode()
    response = requests.post(f"{small_server}/v1/neuron", data=chunks(padded), headers=JSON)
    assert_problem(response, 413, "1,000 bytes", "GRADIENT_MAX_BODY_BYTES")


def test_a_chunked_body_within_the_limit_is_read_whole(small_server):
    body = json.dumps(NEURON).encode()
    response = requests.post(f"{small_server}/v1/neuron", data=chunks(body, 7), headers=JSON)
    assert response.status_code == 200
    assert response.json()["dL_db"] == pytest.approx(-0.2141650169574414, rel=1e-15)


def test_a_declared_length_over_the_limit_is_413(small_server):
    padded = (json.dumps(NEURON) + " " * 5000).encode()
    assert_problem(requests.post(f"{small_server}/v1/neuron", data=padded, headers=JSON), 413)


def test_duplicate_keys_are_400_naming_the_key(client):
    body = (
        '{"x": 1.5, "x": 2.5, "w": 0.8, "b": 0.1, "y": 1, "activation": "sigmoid", "loss": "bce"}'
    )
    assert_problem(client.post("/v1/neuron", data=body, headers=JSON), 400, "'x' appears twice")


def test_duplicate_keys_inside_a_layer_are_400(client):
    layer = '{"weights": [[1.0]], "biases": [0.0], "activation": "relu", "activation": "tanh"}'
    body = f'{{"inputs": [[1.0]], "targets": [[1.0]], "layers": [{layer}], "loss": "mse"}}'
    assert_problem(client.post("/v1/gradients", data=body, headers=JSON), 400, "'activation'")


def test_the_same_key_in_different_objects_is_fine(client):
    layer = '{"weights": [[1.0]], "biases": [0.0], "activation": "relu"}'
    body = f'{{"inputs": [[1.0]], "targets": [[1.0]], "layers": [{layer}, {layer}], "loss": "mse"}}'
    assert client.post("/v1/gradients", data=body, headers=JSON).status_code == 200


def test_a_colon_inside_a_string_is_not_taken_for_a_key(client):
    body = {**NEURON, "activation": 'sig:moid\\": x'}
    response = client.post("/v1/neuron", data=json.dumps(body), headers=JSON)
    assert response.status_code == 422
    assert "activation" in response.get_json()["errors"]


@pytest.mark.parametrize("duplicate", [False, True])
def test_duplicate_keys_are_found_past_a_thousand_colons(client, duplicate):
    colons = ":" * 1500  # past the colons counted one by one
    body = json.dumps({**NEURON, "activation": f"sigmoid{colons}"})
    if duplicate:
        body = body.replace('"loss": "bce"', '"loss": "bce", "loss": "mse"')
    response = client.post("/v1/neuron", data=body, headers=JSON)
    if duplicate:
        assert_problem(response, 400, "'loss' appears twice")
    else:
        assert "activation" in assert_problem(response, 422)["errors"]


@pytest.mark.parametrize("depth", [600, 2000])
def test_deeply_nested_json_is_400_not_500(client, depth):
    body = '{"x": ' + "[" * depth + "]" * depth + "}"
    response = client.post("/v1/neuron", data=body, headers=JSON)
    assert response.status_code in (400, 422)
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(NEURON).encode("utf-16"),
        json.dumps(NEURON).encode("utf-32"),
        b'{"x": 1.5, "activation": "\xff\xfe"}',
    ],
    ids=["utf-16", "utf-32", "invalid-utf-8"],
)
def test_bodies_that_are_not_utf8_are_400(client, body):
    assert_problem(client.post("/v1/neuron", data=body, headers=JSON), 400, "UTF-8")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_an_unsupported_content_encoding_is_415(client, encoding):
    response = client.post(
        "/v1/neuron", data=json.dumps(NEURON), headers={**JSON, "Content-Encoding": encoding}
    )
    assert_problem(response, 415, encoding)


@pytest.mark.parametrize("value", ["3.5", " 2 ", "1_000", "١٢", True, None, [1.0], {"v": 1}])
def test_numbers_must_be_json_numbers(client, value):
    response = client.post("/v1/neuron", json={**NEURON, "b": value})
    body = assert_problem(response, 422)
    assert "b" in body["errors"]


@pytest.mark.parametrize("element", [True, None, "1.0", "NaN"])
def test_array_elements_must_be_json_numbers(client, element):
    response = client.post("/v1/neuron", json={**NEURON, "x": [1.0, element], "w": [0.5, 0.5]})
    body = assert_problem(response, 422)
    assert "x" in body["errors"]


HUGE = "1" + "0" * 400  # an integer literal no double can hold
NEURON_TEXT = '{{"x": {x}, "w": {w}, "b": {b}, "y": 1.0, "activation": "sigmoid", "loss": "bce"}}'
BINARY_X = json.dumps({"dtype": "float64", "shape": [], "data": "AAAAAAAA+D8="})  # 1.5


@pytest.mark.parametrize(
    ("x", "w", "b"),
    [("1.5", "0.8", HUGE), (f"[1.5, -{HUGE}]", "[0.5, 0.5]", "0.1"), (HUGE, "0.8", "0.1")],
    ids=["scalar", "array-element", "bare-number"],
)
def test_an_integer_beyond_any_double_is_400_in_a_body_of_numbers(client, x, w, b):
    body = NEURON_TEXT.format(x=x, w=w, b=b)
    assert_problem(client.post("/v1/neuron", data=body, headers=JSON), 400, "infinity")


@pytest.mark.parametrize(
    ("x", "w", "b", "field"),
    [(BINARY_X, "0.8", HUGE, "b"), (BINARY_X, HUGE, "0.1", "w")],
    ids=["scalar", "bare-number"],
)
def test_an_integer_beyond_any_double_is_422_beside_a_binary_array(client, x, w, b, field):
    # bodies carrying base64 arrays are parsed by msgspec, which keeps big integers exact
    body = NEURON_TEXT.format(x=x, w=w, b=b)
    problem = assert_problem(client.post("/v1/neuron", data=body, headers=JSON), 422)
    assert "finite" in problem["errors"][field][0], problem
