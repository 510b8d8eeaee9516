"""The binary array form: {"dtype", "shape", "data": base64 of little-endian C-order bytes}."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from schemas.binary import encode, encode_json
from tests.problems import random_request


def decode(form: dict) -> np.ndarray:
    assert form["dtype"] == "float64"
    return np.frombuffer(base64.b64decode(form["data"]), dtype="<f8").reshape(form["shape"])


def as_binary(request: dict, dtype: str = "float64") -> dict:
    def form(value):
        array = np.asarray(value, dtype=dtype)
        return {
            "dtype": dtype,
            "shape": list(array.shape),
            "data": base64.b64encode(
                array.astype(array.dtype.newbyteorder("<")).tobytes()
            ).decode(),
        }

    return {
        **request,
        "inputs": form(request["inputs"]),
        "targets": form(request["targets"]),
        "layers": [
            {**layer, "weights": form(layer["weights"]), "biases": form(layer["biases"])}
            for layer in request["layers"]
        ],
    }


@pytest.mark.parametrize("convention", ["numpy", "torch", "columns"])
def test_binary_requests_give_the_same_answer_as_lists(client, convention):
    request = random_request(5, convention=convention, n_layers=3) | {"learning_rate": 0.1}
    plain = client.post("/v1/gradients", json=request).get_json()
    assert client.post("/v1/gradients", json=as_binary(request)).get_json() == plain


def test_a_binary_answer_decodes_to_the_same_arrays_in_the_same_shapes(client):
    request = random_request(6, n_layers=2) | {"include": ["z", "a", "dz"], "learning_rate": 0.1}
    plain = client.post("/v1/gradients", json=request).get_json()
    packed = client.post("/v1/gradients", json=request | {"encoding": "base64"}).get_json()
    assert packed["loss"] == plain["loss"]
    for got, want in zip(packed["layers"], plain["layers"]):
        for name in ("z", "a", "dz", "dW", "db"):
            array = decode(got[name])
            assert array.shape == np.shape(want[name])
            np.testing.assert_array_equal(array, want[name])
    for got, want in zip(packed["updated_layers"], plain["updated_layers"]):
        np.testing.assert_array_equal(decode(got["weights"]), want["weights"])
        np.testing.assert_array_equal(decode(got["biases"]), want["biases"])


def test_float32_is_accepted_and_converted(client):
    request = random_request(7, n_layers=1)
    answer = client.post("/v1/gradients", json=as_binary(request, "float32")).get_json()
    rounded = client.post(
        "/v1/gradients",
        json={
            **request,
            "inputs": np.float32(request["inputs"]).tolist(),
            "targets": np.float32(request["targets"]).tolist(),
            "layers": [
                {
                    **layer,
                    "weights": np.float32(layer["weights"]).tolist(),
                    "biases": np.float32(layer["biases"]).tolist(),
                }
                for layer in request["layers"]
            ],
        },
    ).get_json()
    assert answer == rounded


GOOD = encode(np.ones((2, 2)))


@pytest.mark.parametrize(
    ("form", "fragment"),
    [
        ({**GOOD, "data": "not base64!"}, "not valid base64"),
        ({**GOOD, "data": GOOD["data"][:-4]}, "needs 32"),
        ({**GOOD, "shape": [2, 3]}, "needs 48"),
        ({**GOOD, "dtype": "int64"}, "float64"),
        ({**GOOD, "shape": [2, -2]}, "non-negative integers"),
        ({**GOOD, "shape": "2x2"}, "non-negative integers"),
        ({**GOOD, "shape": [14736660288692000768, 91355285532]}, "needs"),
        ({**GOOD, "shape": [413, 35857, 2**40, 2**40, 0], "data": ""}, "too large"),
        ({**GOOD, "data": 17}, "base64 string"),
        ({"dtype": "float64", "shape": [2, 2]}, "missing: data"),
        ({**GOOD, "order": "F"}, "unknown keys: order"),
        (encode(np.full((2, 2), np.nan)), "finite"),
        (encode(np.ones((2, 0))), "empty"),
        (encode(np.ones((2, 2, 2))), "3-D"),
    ],
    ids=[
        "bad-base64",
        "short",
        "shape-mismatch",
        "dtype",
        "negative-dim",
        "shape-not-list",
        "shape-overflowing-int64",
        "empty-shape-overflowing-int64",
        "data-not-string",
        "missing-data",
        "unknown-key",
        "nan",
        "empty",
        "3-D",
    ],
)
def test_a_bad_binary_array_is_422_naming_the_field(client, form, fragment):
    request = random_request(8, n_layers=1)
    request["layers"][0]["weights"] = form
    response = client.post("/v1/gradients", json=request)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    message = " ".join(response.get_json()["errors"]["layers.0.weights"])
    assert fragment in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("inputs", [0.5, 1.0]), ("targets", [1.0, 0.0, 1.0, 0.0])],
    ids=["1-D inputs", "1-D targets"],
)
def test_shape_messages_are_identical_for_both_forms(client, field, value):
    request = random_request(9, n_layers=1)
    request["inputs"] = [[0.1, 0.2]] * 4
    request["layers"] = [{"weights": [[1.0], [2.0]], "biases": [0.0], "activation": "identity"}]
    request["targets"] = [[0.0]] * 4
    request[field] = value
    as_list = client.post("/v1/gradients", json=request).get_json()["errors"]
    request[field] = encode(np.array(value))
    as_bytes = client.post("/v1/gradients", json=request).get_json()["errors"]
    assert as_list == as_bytes


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6.0).reshape(2, 3),
        np.arange(6.0).reshape(2, 3).T,  # not C-contiguous
        np.array([1.5, -0.0, 1e-310]),
        np.float32([[0.1, 0.2]]),
        np.array(2.5),
    ],
    ids=["2-D", "transposed", "1-D", "float32", "0-D"],
)
def test_the_answer_writer_gives_the_binary_form_as_compact_json(array):
    written = encode_json(array)
    assert json.loads(written) == encode(array)
    assert written == json.dumps(encode(array), separators=(",", ":")).encode()
    assert np.array_equal(decode(json.loads(written)), np.asarray(array, dtype=np.float64))
