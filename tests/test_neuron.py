"""/v1/neuron's loss curve and descent trajectory, the pictures of the bias derivative."""

from __future__ import annotations

import numpy as np
import pytest

BODY = {
    "x": [1.5, -0.5],
    "w": [0.8, 0.3],
    "b": 0.1,
    "y": 1.0,
    "activation": "sigmoid",
    "loss": "bce",
}


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def bce_loss(b):
    a = sigmoid(1.5 * 0.8 - 0.5 * 0.3 + b)
    return -np.log(a)


def test_the_loss_curve_samples_the_loss_around_b(client):
    answer = client.post(
        "/v1/neuron", json=BODY | {"curve_points": 9, "curve_span": 1.5}
    ).get_json()
    curve = answer["loss_curve"]
    np.testing.assert_allclose(curve["b"], np.linspace(0.1 - 1.5, 0.1 + 1.5, 9), rtol=1e-15)
    np.testing.assert_allclose(curve["loss"], bce_loss(np.array(curve["b"])), rtol=1e-12)
    assert curve["loss"][4] == pytest.approx(answer["loss"], rel=1e-15)


def test_the_trajectory_takes_gradient_steps_in_b(client):
    answer = client.post("/v1/neuron", json=BODY | {"steps": 5, "learning_rate": 0.5}).get_json()
    b = [0.1]
    for _ in range(5):
        a = sigmoid(1.5 * 0.8 - 0.5 * 0.3 + b[-1])
        b.append(b[-1] - 0.5 * (a - 1.0))  # sigmoid + bce: dL/db = a - y
    np.testing.assert_allclose(answer["trajectory"]["b"], b, rtol=1e-12)
    np.testing.assert_allclose(answer["trajectory"]["loss"], bce_loss(np.array(b)), rtol=1e-12)
    assert answer["trajectory"]["b"][1] == pytest.approx(answer["b_next"], rel=1e-15)


def test_curves_are_only_returned_when_asked_for(client):
    answer = client.post("/v1/neuron", json=BODY).get_json()
    assert "loss_curve" not in answer and "trajectory" not in answer


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"curve_points": 10_000}, "curve_points"),
        ({"steps": -1}, "steps"),
        ({"curve_span": 0}, "curve_span"),
    ],
)
def test_curve_options_are_bounded(client, changes, field):
    response = client.post("/v1/neuron", json=BODY | changes)
    assert response.status_code == 422 and field in response.get_json()["errors"]
