"""The two documents the project grew from, as tests.

1. The question "why db2 = np.sum(dz2, axis=0, keepdims=True)?" about a 2-4-1
   sigmoid network trained with half squared error, summed over the batch.
2. The single-neuron bias-derivative calculator: sigmoid + bce gives a - y.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.torch_reference import assert_close, reference

RNG = np.random.default_rng(2017)
X = RNG.normal(size=(5, 2))
Y = RNG.integers(0, 2, size=(5, 1)).astype(float)
THETA1, B1 = RNG.normal(size=(2, 4)), RNG.normal(size=(1, 4))
THETA2, B2 = RNG.normal(size=(4, 1)), RNG.normal(size=(1, 1))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def seed_request() -> dict:
    return {
        "inputs": X.tolist(),
        "targets": Y.tolist(),
        "layers": [
            {"weights": THETA1.tolist(), "biases": B1.tolist(), "activation": "sigmoid"},
            {"weights": THETA2.tolist(), "biases": B2.tolist(), "activation": "sigmoid"},
        ],
        "loss": "half_mse",
        "reduction": "sum",
        "include": ["a", "dz"],
    }


def test_db2_is_dz2_summed_over_the_batch_in_the_clients_1x1_shape(client):
    answer = client.post("/v1/gradients", json=seed_request()).get_json()
    dz2 = np.array(answer["layers"][1]["dz"])
    db2 = np.array(answer["layers"][1]["db"])
    assert db2.shape == (1, 1)
    np.testing.assert_array_equal(db2, np.sum(dz2, axis=0, keepdims=True))
    assert_close(db2, reference(seed_request())["layers"][1]["db"], "db2")


def test_the_correct_hand_derivation_matches_and_the_questions_bugs_do_not(client):
    answer = client.post("/v1/gradients", json=seed_request()).get_json()
    h1 = sigmoid(X @ THETA1 + B1)
    h2 = sigmoid(h1 @ THETA2 + B2)
    dh2 = h2 - Y
    correct_dz2 = dh2 * h2 * (1 - h2)  # the sigmoid's derivative uses its output h2
    buggy_dz2 = dh2 * (1 - dh2)  # the question's bug: the derivative taken of dh2
    dz2 = np.array(answer["layers"][1]["dz"])
    assert_close(dz2, correct_dz2, "dz2")
    assert not np.allclose(dz2, buggy_dz2)

    # The last answer's bug: layer 1's delta built from out_l1 (pre-activation) and
    # the column sums of dW2, instead of (dz2 @ theta2.T) * h1 * (1 - h1).
    correct_dz1 = (correct_dz2 @ THETA2.T) * h1 * (1 - h1)
    z1 = X @ THETA1 + B1
    buggy_dz1 = (1 - z1) * z1 * np.sum((h1.T @ correct_dz2).T, axis=0, keepdims=True)
    dz1 = np.array(answer["layers"][0]["dz"])
    assert_close(dz1, correct_dz1, "dz1")
    assert not np.allclose(dz1, buggy_dz1)
    assert_close(answer["layers"][0]["db"], np.sum(correct_dz1, axis=0, keepdims=True), "db1")
    assert_close(answer["layers"][1]["dW"], h1.T @ correct_dz2, "dW2")


def test_one_sigmoid_neuron_with_bce_gives_dL_db_equal_to_a_minus_y(client):
    body = {"x": 1.5, "w": 0.8, "b": 0.1, "y": 1.0, "activation": "sigmoid", "loss": "bce"}
    terms = client.post("/v1/neuron", json=body).get_json()
    a = sigmoid(1.5 * 0.8 + 0.1)
    assert terms["z"] == pytest.approx(1.3, rel=1e-15)
    assert terms["a"] == pytest.approx(a, rel=1e-15)
    assert terms["dL_db"] == pytest.approx(a - 1.0, rel=1e-12)
    assert terms["dz_db"] == 1.0
    assert terms["numerical_dL_db"] == pytest.approx(a - 1.0, rel=1e-7)
    assert terms["b_next"] == pytest.approx(0.1 - 0.1 * (a - 1.0), rel=1e-15)
    assert terms["loss"] == pytest.approx(-np.log(a), rel=1e-12)


def test_one_neuron_with_half_mse_gives_a_minus_y_times_the_activation_slope(client):
    body = {
        "x": [0.5, -2.0],
        "w": [1.0, 0.25],
        "b": -0.3,
        "y": 0.2,
        "activation": "tanh",
        "loss": "half_mse",
        "learning_rate": 0.5,
    }
    terms = client.post("/v1/neuron", json=body).get_json()
    z = 0.5 * 1.0 + -2.0 * 0.25 - 0.3
    a = np.tanh(z)
    slope = 1 - a**2
    assert terms["da_dz"] == pytest.approx(slope, rel=1e-12)
    assert terms["dL_da"] == pytest.approx(a - 0.2, rel=1e-12)
    assert terms["dL_db"] == pytest.approx((a - 0.2) * slope, rel=1e-12)
    assert terms["dL_dw"] == pytest.approx([(a - 0.2) * slope * 0.5, (a - 0.2) * slope * -2.0])
    assert terms["w_next"] == pytest.approx(
        [1.0 - 0.5 * (a - 0.2) * slope * 0.5, 0.25 - 0.5 * (a - 0.2) * slope * -2.0]
    )
