"""POST /v1/exercises: seeded, reproducible problems with their solutions."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.torch_reference import assert_close, reference

BASE = {"seed": 7, "layer_sizes": [2, 3, 1], "activations": ["tanh", "sigmoid"], "loss": "bce"}


def exercise(client, **changes) -> dict:
    response = client.post("/v1/exercises", json=BASE | changes)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_same_request_gives_the_same_bytes(client):
    first = client.post("/v1/exercises", json=BASE).data
    assert client.post("/v1/exercises", json=BASE).data == first


def test_the_same_request_gives_the_same_bytes_in_another_process(client, tmp_path):
    out = tmp_path / "answer.json"
    script = (
        "from service import create_app; import pathlib\n"
        f"body = {BASE!r}\n"
        "answer = create_app().test_client().post('/v1/exercises', json=body).data\n"
        f"pathlib.Path({str(out)!r}).write_bytes(answer)"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, check=True)
    assert out.read_bytes() == client.post("/v1/exercises", json=BASE).data


def test_different_seeds_give_different_problems(client):
    assert exercise(client, seed=1)["problem"] != exercise(client, seed=2)["problem"]


@pytest.mark.parametrize("convention", ["numpy", "torch", "columns"])
@pytest.mark.parametrize("loss", ["mse", "half_mse", "bce", "cross_entropy"])
def test_the_solution_is_the_gradients_answer_and_matches_torch(client, convention, loss):
    sizes = [3, 4, 2] if loss == "cross_entropy" else [3, 4, 1]
    last = {"cross_entropy": "softmax", "bce": "sigmoid"}.get(loss, "tanh")
    answer = exercise(
        client, layer_sizes=sizes, activations=["relu", last], loss=loss, convention=convention
    )
    problem, solution = answer["problem"], answer["solution"]
    assert client.post("/v1/gradients", json=problem).get_json() == solution
    expected = reference(problem)
    assert_close(solution["loss"], expected["loss"], "loss")
    for got, want in zip(solution["layers"], expected["layers"]):
        assert_close(got["dW"], want["dW"], "dW")
        assert_close(got["db"], want["db"], "db")


@pytest.mark.parametrize(
    ("convention", "bias_shape", "expected"),
    [
        ("numpy", "flat", [(3,), (1,)]),
        ("numpy", "row", [(1, 3), (1, 1)]),
        ("torch", "flat", [(3,), (1,)]),
        ("columns", "flat", [(3, 1), (1, 1)]),  # columns has one bias shape only
    ],
)
def test_biases_come_in_the_requested_shape(client, convention, bias_shape, expected):
    answer = exercise(client, convention=convention, bias_shape=bias_shape)
    shapes = [np.shape(layer["biases"]) for layer in answer["problem"]["layers"]]
    assert shapes == expected
    assert [np.shape(layer["db"]) for layer in answer["solution"]["layers"]] == expected


def test_decimals_round_every_generated_number(client):
    problem = exercise(client, decimals=2, layer_sizes=[3, 4, 1], batch_size=5)["problem"]
    numbers = np.concatenate(
        [np.ravel(problem["inputs"]), np.ravel(problem["targets"])]
        + [np.ravel(layer[k]) for layer in problem["layers"] for k in ("weights", "biases")]
    )
    np.testing.assert_array_equal(numbers, np.round(numbers, 2))
    assert not np.all(numbers == np.round(numbers, 1))  # really two decimals, not fewer


def test_targets_fit_the_loss(client):
    bce = exercise(client, batch_size=16)["problem"]["targets"]
    assert set(np.ravel(bce)) <= {0.0, 1.0}
    ce = exercise(
        client,
        layer_sizes=[2, 3],
        activations=["softmax"],
        loss="cross_entropy",
        batch_size=16,
    )["problem"]["targets"]
    np.testing.assert_array_equal(np.sum(ce, axis=1), np.ones(16))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"activations": ["tanh"]}, "activations"),
        ({"activations": ["tanh", "relu"]}, "loss"),
        ({"seed": -1}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"seed": True}, "seed"),
        ({"layer_sizes": [2]}, "layer_sizes"),
        ({"layer_sizes": [2, 0, 1]}, "layer_sizes.1"),
        ({"bias_shape": "column"}, "bias_shape"),
        ({"decimals": 2.5}, "decimals"),
        ({"batch_size": 0}, "batch_size"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_exercise_requests_are_422_naming_the_field(client, changes, field):
    response = client.post("/v1/exercises", json=BASE | changes)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    assert field in response.get_json()["errors"]


#: Answers of /v1/exercises before it generated any layer but dense (issue 13 item 7): the
#: same request must keep answering these exact bytes, whatever the generator learns.
PINNED = [
    (BASE, "b360bff1eea4d3efebc3e7c4fac190975b6629d1ef98856fb21dd117bd878ec4"),
    (
        {
            "seed": 11,
            "layer_sizes": [3, 4, 3],
            "activations": ["relu", "softmax"],
            "loss": "cross_entropy",
            "convention": "columns",
            "decimals": 2,
            "batch_size": 5,
        },
        "214570993660a0ca24d597ea914cb0aa90f8fb4d45994f5da5ff66a5a17d0635",
    ),
    (
        {
            "seed": 3,
            "layer_sizes": [2, 2, 2],
            "activations": ["sigmoid", "identity"],
            "loss": "svm",
            "convention": "torch",
            "bias_shape": "flat",
            "reduction": "sum",
            "dz_scale": "per_sample",
        },
        "b39b96f04aaf9502f7f6214db73b6dd8671961c947969f2412d406636b7d03b3",
    ),
    (
        {"seed": 5, "layer_sizes": [2, 3], "activations": ["tanh"], "loss": "hinge"},
        "b745b60cad9efdb2ab53cccc9ad08cd781fbb1836dbb5bd68ac9a322d236db10",
    ),
]


@pytest.mark.parametrize(("body", "sha256"), PINNED)
def test_a_dense_only_request_answers_the_same_bytes_as_before_layer_kinds(client, body, sha256):
    response = client.post("/v1/exercises", json=body)
    assert response.status_code == 200
    assert hashlib.sha256(response.data).hexdigest() == sha256
