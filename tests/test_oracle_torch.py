"""/v1/gradients agrees with PyTorch autograd in float64 to a relative error of 1e-9.

Random networks of 1 to 4 layers over every activation, loss, reduction,
convention and accepted bias shape, with and without l2.  The oracle is fed
the request exactly as the client sent it (tests/torch_reference.py).
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from tests.problems import BIAS_FORMS, CONVENTIONS, HIDDEN_ACTIVATIONS, LOSSES, post, random_request
from tests.torch_reference import assert_close, assert_matches_torch, reference

ALL = ["z", "a", "dz"]


@pytest.mark.parametrize(
    ("convention", "loss", "reduction", "l2", "seed"),
    [
        pytest.param(*combo, id="-".join(map(str, combo)))
        for combo in itertools.product(CONVENTIONS, LOSSES, ("mean", "sum"), (0.0, 0.05), range(3))
    ],
)
def test_random_networks_match_torch(client, convention, loss, reduction, l2, seed):
    request = random_request(seed, convention=convention, loss=loss, reduction=reduction, l2=l2) | {
        "include": ALL
    }
    assert_matches_torch(post(client, request), request)


@pytest.mark.parametrize(
    ("activation", "convention", "bias_form"),
    [
        pytest.param(act, conv, form, id=f"{act}-{conv}-{form}")
        for act in HIDDEN_ACTIVATIONS
        for conv in CONVENTIONS
        for form in BIAS_FORMS[conv]
    ],
)
@pytest.mark.parametrize("loss", ["mse", "half_mse"])
def test_every_activation_in_every_layer_matches_torch(
    client, activation, convention, bias_form, loss
):
    request = random_request(
        zlib.crc32(f"{activation}-{convention}-{bias_form}-{loss}".encode()),
        convention=convention,
        loss=loss,
        activations=(activation,) * 3,
        bias_form=bias_form,
        n_layers=3,
    ) | {"include": ALL}
    assert_matches_torch(post(client, request), request)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_gradients_come_back_in_the_shapes_the_client_sent(client, convention):
    request = random_request(7, convention=convention, loss="mse", n_layers=3)
    answer = post(client, request)
    for sent, got in zip(request["layers"], answer["layers"]):
        assert np.shape(got["dW"]) == np.shape(sent["weights"])
        assert np.shape(got["db"]) == np.shape(sent["biases"])
        assert np.shape(got["a"])[1 if convention == "columns" else 0] == len(
            request["inputs"][0] if convention == "columns" else request["inputs"]
        )


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_one_learning_rate_step_matches_torch(client, convention):
    request = random_request(11, convention=convention, loss="half_mse", n_layers=2)
    request["learning_rate"] = 0.25
    answer = post(client, request)
    expected = reference(request)
    for sent, grads, updated in zip(
        request["layers"], expected["layers"], answer["updated_layers"]
    ):
        assert_close(updated["weights"], np.array(sent["weights"]) - 0.25 * grads["dW"], "weights")
        assert_close(updated["biases"], np.array(sent["biases"]) - 0.25 * grads["db"], "biases")


def test_linear_is_an_alias_of_identity(client):
    request = random_request(3, activations=("linear", "linear"), n_layers=2)
    assert_matches_torch(post(client, request), request)


@pytest.mark.parametrize(
    ("loss", "scale"),
    [("bce", 40.0), ("cross_entropy", 3000.0)],
    ids=["bce-saturated-sigmoid", "cross_entropy-logits-in-the-thousands"],
)
def test_fused_losses_stay_finite_and_exact_at_extreme_logits(client, loss, scale):
    request = random_request(5, loss=loss, n_layers=1)
    request["layers"][0]["weights"] = (np.array(request["layers"][0]["weights"]) * scale).tolist()
    answer = post(client, request)
    assert np.isfinite(answer["loss"])
    assert_matches_torch(answer, request)


def test_relu_derivative_at_zero_follows_pytorch(client):
    request = {
        "inputs": [[0.0], [1.0]],
        "targets": [[1.0], [1.0]],
        "layers": [
            {"weights": [[1.0, -1.0]], "biases": [0.0, 0.0], "activation": "relu"},
            {"weights": [[1.0], [1.0]], "biases": [0.0], "activation": "leaky_relu"},
        ],
        "loss": "mse",
        "include": ALL,
    }
    assert_matches_torch(post(client, request), request)


def test_softplus_is_exact_log1p_exp_beyond_torchs_threshold(client):
    # torch's F.softplus returns z itself above z = 20; the exact value differs by e^-z.
    request = {
        "inputs": [[25.0], [-30.0]],
        "targets": [[0.0], [0.0]],
        "layers": [{"weights": [[1.0]], "biases": [0.0], "activation": "softplus"}],
        "loss": "mse",
        "include": ["a"],
    }
    answer = post(client, request)
    assert answer["layers"][0]["a"][0][0] == np.logaddexp(0.0, 25.0)
    assert answer["layers"][0]["a"][1][0] == pytest.approx(np.exp(-30.0), rel=1e-15)
    assert_matches_torch(answer, request)


# -- issue 14, first step: bias-free layers, dx, upstream, l2_style ---------------------------


def without_biases(request: dict, layers) -> dict:
    """The request with the given layers' biases left out (every other one null, to show both)."""
    request = {**request, "layers": [dict(layer) for layer in request["layers"]]}
    for k, i in enumerate(layers):
        if k % 2:
            request["layers"][i]["biases"] = None
        else:
            del request["layers"][i]["biases"]
    return request


def upstream_request(seed: int, convention: str, **options) -> dict:
    """A random network whose targets and loss are replaced by a random dL/d(output)."""
    request = random_request(seed, convention=convention, **options)
    shape = np.shape(request.pop("targets"))
    del request["loss"], request["reduction"]
    return request | {"upstream": np.random.default_rng(seed).normal(size=shape).tolist()}


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("seed", range(4))
def test_layers_without_a_bias_match_torch_and_answer_no_db(client, convention, seed):
    request = random_request(seed, convention=convention, loss="half_mse", n_layers=3, l2=0.05)
    request = without_biases(request, [0, 2]) | {"include": [*ALL, "dx"], "learning_rate": 0.5}
    answer = post(client, request)
    assert "db" not in answer["layers"][0] and "db" not in answer["layers"][2]
    assert "db" in answer["layers"][1]
    assert_matches_torch(answer, request)
    assert "biases" not in answer["updated_layers"][0]
    assert "biases" in answer["updated_layers"][1]


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_dx_of_every_layer_matches_torch_in_the_inputs_layout(client, convention, loss):
    request = random_request(
        zlib.crc32(f"dx-{convention}-{loss}".encode()), convention=convention, loss=loss, n_layers=3
    ) | {"include": ["dx"]}
    answer = post(client, request)
    assert np.shape(answer["layers"][0]["dx"]) == np.shape(request["inputs"])
    assert_matches_torch(answer, request)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("l2", [0.0, 0.1])
@pytest.mark.parametrize("seed", range(3))
def test_upstream_starts_backpropagation_and_matches_torch(client, convention, l2, seed):
    request = upstream_request(seed, convention, l2=l2) | {"include": [*ALL, "dx"]}
    answer = post(client, request)
    assert answer["loss"] is None
    assert_matches_torch(answer, request)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_l2_style_full_is_cs231ns_reg_sum_w_squared(client, convention, loss):
    request = random_request(
        zlib.crc32(f"full-{convention}-{loss}".encode()), convention=convention, loss=loss, l2=0.3
    ) | {"l2_style": "full", "include": ALL}
    answer = post(client, request)
    assert_matches_torch(answer, request)
    half = post(client, request | {"l2_style": "half"})
    assert half["loss"] != answer["loss"]


def test_one_dense_layer_with_upstream_is_cs231ns_affine_backward(client):
    rng = np.random.default_rng(231)
    x, w, b, dout = (rng.normal(size=s) for s in [(10, 6), (6, 5), (5,), (10, 5)])
    answer = post(
        client,
        {
            "inputs": x.tolist(),
            "layers": [{"weights": w.tolist(), "biases": b.tolist(), "activation": "identity"}],
            "upstream": dout.tolist(),
            "include": ["dx"],
        },
    )
    # cs231n/layers.py affine_backward, written out
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = np.sum(dout, axis=0)
    assert answer["loss"] is None
    assert_close(answer["layers"][0]["dx"], dx, "dx")
    assert_close(answer["layers"][0]["dW"], dw, "dW")
    assert_close(answer["layers"][0]["db"], db, "db")
