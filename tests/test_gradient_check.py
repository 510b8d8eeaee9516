"""/v1/gradients with gradient_check: analytic gradients against central differences."""

from __future__ import annotations

import numpy as np
import pytest

from service.core import Limits
from service.core.gradient_check import EPSILON
from tests.problems import CONVENTIONS, random_request

SMOOTH = ("sigmoid", "tanh", "softplus", "identity")


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("loss", ["mse", "half_mse", "bce", "cross_entropy"])
@pytest.mark.parametrize("seed", range(3))
def test_smooth_networks_agree_with_central_differences(client, convention, loss, seed):
    request = random_request(
        seed, convention=convention, loss=loss, activations=SMOOTH[seed:] + SMOOTH[:seed]
    )
    response = client.post("/v1/gradients", json=request | {"gradient_check": True})
    assert response.status_code == 200, response.get_json()
    check = response.get_json()["gradient_check"]
    assert check["epsilon"] == EPSILON
    assert len(check["layers"]) == len(request["layers"])
    assert check["max_relative_error"] < 1e-6
    assert check["max_relative_error"] == max(
        max(layer["dW"], layer["db"]) for layer in check["layers"]
    )


def test_gradient_check_is_off_by_default(client):
    answer = client.post("/v1/gradients", json=random_request(1)).get_json()
    assert "gradient_check" not in answer


def test_a_check_over_the_parameter_bound_is_422_naming_the_bound():
    from service import create_app

    client = create_app({"GRADIENT_LIMITS": Limits(max_check_parameters=10)}).test_client()
    request = random_request(2, n_layers=3) | {"gradient_check": True}
    response = client.post("/v1/gradients", json=request)
    assert response.status_code == 422
    body = response.get_json()
    assert response.content_type == "application/problem+json"
    message = body["errors"]["gradient_check"][0]
    assert "10" in message and "GRADIENT_MAX_CHECK_PARAMETERS" in message
    # the same request without the check is within every bound
    del request["gradient_check"]
    assert client.post("/v1/gradients", json=request).status_code == 200


def test_gradient_check_must_be_a_json_boolean(client):
    response = client.post("/v1/gradients", json=random_request(1) | {"gradient_check": "yes"})
    assert response.status_code == 422
    assert "gradient_check" in response.get_json()["errors"]


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("l2_style", ["half", "full"])
def test_bias_free_layers_and_upstream_agree_with_central_differences(client, convention, l2_style):
    request = random_request(5, convention=convention, activations=SMOOTH, n_layers=3)
    shape = np.shape(request.pop("targets"))
    del request["loss"], request["reduction"]
    request["upstream"] = np.random.default_rng(5).normal(size=shape).tolist()
    request["layers"][1]["biases"] = None
    request |= {"l2": 0.2, "l2_style": l2_style, "gradient_check": True}
    response = client.post("/v1/gradients", json=request)
    assert response.status_code == 200, response.get_json()
    check = response.get_json()["gradient_check"]
    assert check["layers"][1]["db"] is None
    assert check["layers"][0]["db"] is not None and check["layers"][2]["db"] is not None
    assert check["max_relative_error"] < 1e-6
