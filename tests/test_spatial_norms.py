"""Issue 15, normalisation: spatial batchnorm on 4-D data and the groupnorm layer type.

Every number is PyTorch float64's (F.batch_norm on 4-D data, F.group_norm, permuted for
NHWC), through tests/torch_reference.py, fed the request exactly as sent; CS231n's own
published spatial batchnorm check values are reproduced; every shape mistake is a 422 at
its field; a request too large for a worker is refused before its norm runs.
"""

from __future__ import annotations

import copy
import tracemalloc

import numpy as np
import orjson
import pytest

from service.core import Problem
from service.core.layers import batchnorm as batchnorm_kind
from service.core.layers import groupnorm as groupnorm_kind
from service.core.problem import Layer
from tests.memory_cases import LIMIT, assert_every_pass_within_estimate, estimate
from tests.problems import post
from tests.torch_reference import assert_close, assert_matches_torch

LAYOUTS = ("NCHW", "NHWC")
CONVENTIONS = ("numpy", "torch", "columns")
ALL = ["z", "a", "dz", "dx"]
MiB = 2**20


def images(x: np.ndarray, layout: str) -> list:
    """Canonical (N, C, H, W) in the client's layout."""
    return (x.transpose(0, 2, 3, 1) if layout == "NHWC" else x).tolist()


def per_channel(v: np.ndarray, layout: str, form: str) -> list:
    """A per-channel vector as (C,) ("flat"), or broadcasting along the layout's channel axis
    ("broadcast": (1, C, 1, 1) in NCHW, (1, 1, 1, C) in NHWC)."""
    if form == "flat":
        return v.tolist()
    return v.reshape((1, 1, 1, -1) if layout == "NHWC" else (1, -1, 1, 1)).tolist()


def errors_of(client, request: dict) -> dict:
    response = client.post("/v1/gradients", json=request)
    assert response.status_code == 422, response.get_data(as_text=True)
    return response.get_json()["errors"]


def single_norm(layout: str, layer: dict, x: np.ndarray, seed: int = 0) -> dict:
    """One norm layer over images x (canonical NCHW), a random upstream, every array."""
    dout = np.random.default_rng(seed + 100).normal(size=x.shape)
    return {
        "layout": layout,
        "inputs": images(x, layout),
        "layers": [layer],
        "upstream": images(dout, layout),
        "include": ALL,
    }


# -- spatial batchnorm: every mode, variance and shape against torch -------------------------


@pytest.mark.parametrize("form", ["flat", "broadcast"])
@pytest.mark.parametrize("variance", ["biased", "unbiased"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_spatial_batchnorm_matches_torch_batch_norm_on_4d_data(
    client, layout, mode, variance, form
):
    rng = np.random.default_rng(len(layout) + len(mode) + len(variance) + len(form))
    n, c, h, w = 3, 4, 5, 2
    x = rng.normal(loc=2.0, scale=3.0, size=(n, c, h, w))
    layer = {
        "type": "batchnorm",
        "gamma": per_channel(rng.normal(size=c), layout, form),
        "beta": per_channel(rng.normal(size=c), layout, form),
        "running_mean": per_channel(rng.normal(size=c), layout, form),
        "running_var": per_channel(rng.random(size=c) + 0.5, layout, form),
        "mode": mode,
        "variance": variance,
        "momentum": 0.8,
        "eps": 1e-3,
        "activation": "tanh",
    }
    request = single_norm(layout, layer, x)
    answer = post(client, request)
    expected = assert_matches_torch(answer, request)  # z, a, dz, dx, dgamma, dbeta, running
    got = answer["layers"][0]
    assert np.shape(got["dgamma"]) == np.shape(layer["gamma"])
    assert np.shape(got["dx"]) == np.shape(request["inputs"])
    if mode == "train":  # updated per channel over N*H*W: momentum * running + 0.2 * batch's
        assert set(expected["layers"][0]) >= {"running_mean", "running_var"}
        assert np.shape(got["running_var"]) == np.shape(layer["running_var"])
    else:
        assert "running_mean" not in got


def test_spatial_batchnorm_is_batchnorm_of_the_n_h_w_rows(client):
    """CS231n's reference solution: (N, C, H, W) -> (N*H*W, C), batchnorm, and back."""
    rng = np.random.default_rng(7)
    x, dout = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    layer = {"type": "batchnorm", "gamma": gamma.tolist(), "beta": beta.tolist()}
    spatial = post(
        client,
        {"inputs": x.tolist(), "layers": [layer], "upstream": dout.tolist(), "include": ALL},
    )["layers"][0]
    rows = lambda t: t.transpose(0, 2, 3, 1).reshape(-1, 3)  # noqa: E731
    flat = post(
        client,
        {
            "inputs": rows(x).tolist(),
            "layers": [layer],
            "upstream": rows(dout).tolist(),
            "include": ALL,
        },
    )["layers"][0]
    for name in ("z", "dx"):
        assert_close(rows(np.array(spatial[name])), flat[name], name, rtol=1e-12)
    for name in ("dgamma", "dbeta"):
        assert_close(spatial[name], flat[name], name, rtol=1e-12)


# -- groupnorm against torch ----------------------------------------------------------------


@pytest.mark.parametrize("form", ["flat", "broadcast"])
@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_groupnorm_matches_torch_group_norm(client, layout, groups, form):
    rng = np.random.default_rng(groups * 10 + len(layout) + len(form))
    x = rng.normal(loc=1.0, scale=2.0, size=(2, 6, 3, 4))
    layer = {
        "type": "groupnorm",
        "groups": groups,
        "gamma": per_channel(rng.normal(size=6), layout, form),
        "beta": per_channel(rng.normal(size=6), layout, form),
        "activation": "sigmoid",
    }
    request = single_norm(layout, layer, x)
    answer = post(client, request)
    assert_matches_torch(answer, request)
    assert np.shape(answer["layers"][0]["dbeta"]) == np.shape(layer["beta"])


def test_groupnorm_eps_defaults_to_1e_5_and_can_be_set(client):
    """torch's group_norm and CS231n's gn_param.get("eps", 1e-5) agree on the default."""
    rng = np.random.default_rng(8)
    x = rng.normal(scale=0.01, size=(2, 4, 3, 3))  # small variance: eps shows
    for eps in (None, 0.1):
        layer = {"type": "groupnorm", "groups": 2, "gamma": [1.0] * 4, "beta": [0.0] * 4}
        if eps is not None:
            layer["eps"] = eps
        request = single_norm("NCHW", layer, x)
        assert_matches_torch(post(client, request), request)  # the reference's default: 1e-5


# -- in a network: conv - norm - relu - max pool - flatten - dense, class labels -------------


def dense(w: np.ndarray, b: np.ndarray, convention: str) -> dict:
    if convention == "numpy":
        return {"weights": w.tolist(), "biases": b.tolist(), "activation": "softmax"}
    biases = b.reshape(-1, 1) if convention == "columns" else b
    return {"weights": w.T.tolist(), "biases": biases.tolist(), "activation": "softmax"}


def conv_norm_network(layout: str, convention: str, norm: str, seed: int = 0) -> dict:
    """conv 3x3 pad 1 - spatial batchnorm (train, running statistics) or groupnorm - relu -
    2x2 max pool - flatten - dense softmax, cross-entropy over class labels."""
    rng = np.random.default_rng(seed)
    n, c, h, w, f, classes = 4, 3, 6, 6, 4, 5
    x = rng.normal(size=(n, c, h, w))
    filters = rng.normal(size=(f, c, 3, 3)) * 0.4
    norm_layer = {
        "type": norm,
        "gamma": per_channel(rng.normal(size=f), layout, "broadcast"),
        "beta": per_channel(rng.normal(size=f), layout, "flat"),
        "activation": "relu",
    }
    if norm == "batchnorm":
        norm_layer |= {"running_mean": [0.0] * f, "running_var": [1.0] * f}
    else:
        norm_layer["groups"] = 2
    return {
        "layout": layout,
        "convention": convention,
        "inputs": images(x, layout),
        "layers": [
            {
                "type": "conv2d",
                "weights": (
                    filters.transpose(2, 3, 1, 0) if layout == "NHWC" else filters
                ).tolist(),
                "biases": rng.normal(size=f).tolist(),
                "pad": 1,
            },
            norm_layer,
            {"type": "maxpool2d", "pool": 2},
            {"type": "flatten"},
            dense(rng.normal(size=(f * 3 * 3, classes)), rng.normal(size=classes), convention),
        ],
        "targets": [0, 4, 2, 1],
        "loss": "cross_entropy",
        "include": ALL,
    }


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_conv_norm_relu_pool_network_with_class_labels_matches_torch(
    client, layout, convention, norm
):
    request = conv_norm_network(layout, convention, norm)
    answer = post(client, request)
    assert_matches_torch(answer, request)


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_learning_rate_steps_gamma_and_beta_in_the_shapes_sent(client, layout, norm):
    request = conv_norm_network(layout, "numpy", norm, seed=1) | {"learning_rate": 0.5}
    answer = post(client, request)
    assert_matches_torch(answer, request)  # updated = sent - 0.5 * torch's gradient
    assert np.shape(answer["updated_layers"][1]["gamma"]) == (
        (1, 1, 1, 4) if layout == "NHWC" else (1, 4, 1, 1)
    )


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_gradient_check_agrees_on_gamma_beta_and_dx(client, layout, norm):
    """tanh after the norm: relu's zeros would tie in the max pool's windows, where central
    differences see half a gradient; and no conv bias (batchnorm cancels it: its exact
    gradient is 0, its numerical one rounding noise).  A norm's dx sums to zero over each
    channel (group), so some of its entries are tiny, and the central differences' rounding
    (about 1e-11) is up to 1e-4 of them, entry by entry: dx's bound is looser (its exact
    values are torch's, above)."""
    request = conv_norm_network(layout, "numpy", norm, seed=2)
    request |= {"include": ["dx"], "gradient_check": True}
    request["layers"][1]["activation"] = "tanh"
    del request["layers"][0]["biases"]
    answer = post(client, request)
    assert_matches_torch(answer, request)
    check = answer["gradient_check"]
    assert set(check["layers"][1]) == {"dgamma", "dbeta", "dx"}
    assert check["layers"][1]["dgamma"] < 1e-8
    assert check["layers"][1]["dbeta"] < 1e-8
    assert check["max_relative_error"] < 1e-3


# -- CS231n's own published checks (assignment 2, ConvolutionalNetworks.ipynb) ----------------


def cs231n_x(shape: tuple, scale: float, loc: float) -> np.ndarray:
    return scale * np.random.randn(*shape) + loc


def test_cs231n_spatial_batchnorm_train_time_check_is_reproduced(client):
    """np.random.seed(231); x = 4 * randn(2, 3, 4, 5) + 10: the notebook prints, after
    spatial batchnorm, stds [0.99999962 0.99999951 0.9999996] with gamma 1, beta 0, and
    means [6. 7. 8.], stds [2.99999885 3.99999804 4.99999798] with gamma [3, 4, 5],
    beta [6, 7, 8] (8 decimals: compared to half the last one)."""
    np.random.seed(231)
    x = cs231n_x((2, 3, 4, 5), 4, 10)
    published = {
        ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)): ([0, 0, 0], [0.99999962, 0.99999951, 0.9999996]),
        ((3.0, 4.0, 5.0), (6.0, 7.0, 8.0)): ([6, 7, 8], [2.99999885, 3.99999804, 4.99999798]),
    }
    for (gamma, beta), (means, stds) in published.items():
        layer = {"type": "batchnorm", "gamma": list(gamma), "beta": list(beta)}
        request = {"inputs": x.tolist(), "layers": [layer], "upstream": np.ones(x.shape).tolist()}
        out = np.array(post(client, request)["layers"][0]["a"])
        np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), means, rtol=0, atol=1e-12)
        np.testing.assert_allclose(out.std(axis=(0, 2, 3)), stds, rtol=0, atol=5e-9)


def test_cs231n_spatial_batchnorm_test_time_check_is_reproduced_through_running_averages(client):
    """np.random.seed(231); 50 train-mode passes over 2.3 * randn(10, 4, 11, 12) + 13, each
    answer's running statistics sent with the next (CS231n starts them at zeros, momentum
    0.9), then a test-mode pass: the notebook prints means [-0.08034406 0.07562881
    0.05716371 0.04378383] and stds [0.96718744 1.0299714 1.02887624 1.00585577]."""
    np.random.seed(231)
    c = 4
    layer = {
        "type": "batchnorm",
        "gamma": [1.0] * c,
        "beta": [0.0] * c,
        "running_mean": [0.0] * c,
        "running_var": [0.0] * c,
    }
    for _ in range(50):
        x = cs231n_x((10, c, 11, 12), 2.3, 13)
        request = {"inputs": x.tolist(), "layers": [layer], "upstream": np.ones(x.shape).tolist()}
        got = post(client, request)["layers"][0]
        layer |= {"running_mean": got["running_mean"], "running_var": got["running_var"]}
    x = cs231n_x((10, c, 11, 12), 2.3, 13)
    request = {
        "inputs": x.tolist(),
        "layers": [layer | {"mode": "eval"}],
        "upstream": np.ones(x.shape).tolist(),
    }
    out = np.array(post(client, request)["layers"][0]["a"])
    means = [-0.08034406, 0.07562881, 0.05716371, 0.04378383]
    stds = [0.96718744, 1.0299714, 1.02887624, 1.00585577]
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), means, rtol=0, atol=5e-9)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), stds, rtol=0, atol=5e-9)


def test_cs231n_spatial_groupnorm_forward_check_holds(client):
    """np.random.seed(231); x = 4 * randn(2, 6, 4, 5) + 10, G = 2, gamma ones((1, C, 1, 1)):
    each sample's group has mean 0 and std sqrt(var / (var + 1e-5)), var its own variance
    (the notebook asks for "close to 0" and "close to 1"; the one printout of it found,
    stds 0.99999834..., is not eps 1e-5's, so it is not compared here)."""
    np.random.seed(231)
    x = cs231n_x((2, 6, 4, 5), 4, 10)
    layer = {
        "type": "groupnorm",
        "groups": 2,
        "gamma": np.ones((1, 6, 1, 1)).tolist(),
        "beta": np.zeros((1, 6, 1, 1)).tolist(),
    }
    request = {"inputs": x.tolist(), "layers": [layer], "upstream": np.ones(x.shape).tolist()}
    out = np.array(post(client, request)["layers"][0]["a"]).reshape(4, -1)
    var = x.reshape(4, -1).var(axis=1)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-14)
    np.testing.assert_allclose(out.std(axis=1), np.sqrt(var / (var + 1e-5)), rtol=1e-12)
    # the notebook's "before" statistics, to be sure this is its x
    np.testing.assert_allclose(
        x.reshape(4, -1).mean(axis=1), [9.72505327, 8.51114185, 8.9147544, 9.43448077], atol=5e-9
    )


# -- /v1/check grades both ---------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
def test_check_grades_dgamma_dbeta_and_dx_of_both_norms(client, norm):
    request = conv_norm_network("NHWC", "numpy", norm, seed=3)
    answer = post(client, request)
    problem = {k: v for k, v in request.items() if k != "include"}
    right = answer["layers"][1]
    submission = {
        "layers": [
            {},
            {"dgamma": right["dgamma"], "dbeta": right["dbeta"], "dx": right["dx"]},
            {},
            {},
            {},
        ]
    }
    response = client.post("/v1/check", json=problem | {"submission": submission})
    assert response.status_code == 200, response.get_data(as_text=True)
    results = {r["field"]: r["passed"] for r in response.get_json()["results"]}
    assert results == {"layers.1.dgamma": True, "layers.1.dbeta": True, "layers.1.dx": True}

    submission["layers"][1] = {
        "dgamma": (2 * np.array(right["dgamma"])).tolist(),  # a lost factor of 2
        "dbeta": np.array(right["dbeta"][:3]).tolist(),  # 3 channels of 4
        "dx": (np.array(right["dx"]) + 0.1).tolist(),
    }
    response = client.post("/v1/check", json=problem | {"submission": submission})
    assert response.status_code == 200, response.get_data(as_text=True)
    results = {r["field"]: r for r in response.get_json()["results"]}
    assert {field: r["diagnosis"] for field, r in results.items()} == {
        "layers.1.dgamma": "scaled_by_constant",
        "layers.1.dbeta": "wrong_shape",
        "layers.1.dx": "wrong_values",
    }
    assert not any(r["passed"] for r in results.values())


@pytest.mark.parametrize(
    ("norm", "layout", "dgamma", "dx"),
    [
        (
            "batchnorm",
            "NHWC",
            "dgamma = np.sum(dout * x_hat, axis=(0, 1, 2)), x_hat the normalised input.",
            "dx is batchnorm's on the images as (N*H*W, C) rows, as CS231n's "
            "spatial_batchnorm_backward",
        ),
        (
            "groupnorm",
            "NCHW",
            "dgamma = np.sum(dout * x_hat, axis=(0, 2, 3)), x_hat the normalised input.",
            "dx is layernorm's on each row of x.reshape(N * G, -1) (NCHW)",
        ),
    ],
)
def test_a_wrong_norm_gradient_on_images_gets_the_per_channel_formula(
    client, norm, layout, dgamma, dx
):
    """Not the 2-D batchnorm's axis=0, nor (for groupnorm's dx) dropout's formula."""
    request = conv_norm_network(layout, "numpy", norm, seed=3)
    right = post(client, request)["layers"][1]
    problem = {k: v for k, v in request.items() if k != "include"}
    wrong = {name: (np.array(right[name]) + 0.1).tolist() for name in ("dgamma", "dx")}
    submission = {"layers": [{}, wrong, {}, {}, {}]}
    response = client.post("/v1/check", json=problem | {"submission": submission})
    results = {r["field"]: r["message"] for r in response.get_json()["results"]}
    assert results["layers.1.dgamma"].endswith(dgamma)
    assert dx in results["layers.1.dx"]
    assert "keep_prob" not in results["layers.1.dx"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_check_accepts_a_per_channel_gradient_as_c_or_in_the_layouts_4d_shape(client, layout):
    """CS231n's spatial batchnorm answers (C,), its groupnorm (1, C, 1, 1): either passes,
    with a note, unless strict_shapes."""
    request = conv_norm_network(layout, "numpy", "groupnorm", seed=4)
    answer = post(client, request)
    problem = {k: v for k, v in request.items() if k != "include"}
    right = answer["layers"][1]
    four_d = (1, 1, 1, 4) if layout == "NHWC" else (1, 4, 1, 1)
    assert np.shape(right["dgamma"]) == four_d and np.shape(right["dbeta"]) == (4,)
    swapped = {
        "dgamma": np.reshape(right["dgamma"], -1).tolist(),
        "dbeta": np.reshape(right["dbeta"], four_d).tolist(),
    }
    submission = {"layers": [{}, swapped, {}, {}, {}]}
    response = client.post("/v1/check", json=problem | {"submission": submission})
    results = {r["field"]: r for r in response.get_json()["results"]}
    assert results["layers.1.dgamma"]["passed"] and results["layers.1.dbeta"]["passed"]
    assert results["layers.1.dgamma"]["message"].endswith(
        f"Accepted in shape (4,); the problem's gamma is {four_d}."
    )
    strict = problem | {"submission": submission, "strict_shapes": True}
    results = client.post("/v1/check", json=strict).get_json()["results"]
    assert [r["diagnosis"] for r in results] == ["wrong_shape", "wrong_shape"]


# -- errors: a 422 at the exact path, with the shapes and the fix ----------------------------


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gamma_of_the_wrong_channel_count_is_refused_with_the_expected_shapes(client, layout, norm):
    request = conv_norm_network(layout, "numpy", norm)
    request["layers"][1]["gamma"] = [1.0, 1.0, 1.0]  # the conv has 4 filters
    errors = errors_of(client, request)
    assert list(errors) == ["layers.1.gamma"]
    broadcast = "(1, 1, 1, 4)" if layout == "NHWC" else "(1, 4, 1, 1)"
    assert errors["layers.1.gamma"] == [
        f"got shape (3,), expected (4,) or {broadcast}: gamma holds one scale per channel of "
        f"the layer's input (layer 0's output are 4 channel(s) of 6x6), so it needs 4 "
        f"value(s), but 3 were sent; send 4 value(s) as a flat list of shape (4,), or shaped "
        f"{broadcast} to broadcast along the {layout} channel axis."
    ]


def test_an_nchw_shaped_gamma_under_nhwc_images_gets_the_layout_hint(client):
    request = conv_norm_network("NHWC", "numpy", "groupnorm")
    request["layers"][1]["beta"] = np.zeros((1, 4, 1, 1)).tolist()
    [message] = errors_of(client, request)["layers.1.beta"]
    assert message.startswith("got shape (1, 4, 1, 1), expected (4,) or (1, 1, 1, 4)")
    assert "(1, 4, 1, 1) is the NCHW layout's shape: in NHWC the channels are axis 3" in message
    assert 'set "layout" to "NCHW"' in message


def test_groups_that_do_not_divide_the_channels_name_the_divisors_that_would(client):
    request = conv_norm_network("NCHW", "numpy", "groupnorm")
    request["layers"][1]["groups"] = 3
    errors = errors_of(client, request)
    assert errors == {
        "layers.1.groups": [
            "got 3, which does not divide the 4 channel(s) (layer 0's output are 4 channel(s) "
            "of 6x6): each group holds C / G contiguous channels, so G must divide C. Send one "
            "of 1, 2, 4 (1: layernorm over each image; 4: instance norm)."
        ]
    }


@pytest.mark.parametrize(("groups", "start"), [(0, "must be at least 1"), (1.5, "expected")])
def test_groups_must_be_a_whole_number_from_1(client, groups, start):
    request = conv_norm_network("NCHW", "numpy", "groupnorm")
    request["layers"][1]["groups"] = groups
    assert errors_of(client, request)["layers.1.groups"][0].startswith(start)


def test_groups_are_required(client):
    request = conv_norm_network("NCHW", "numpy", "groupnorm")
    del request["layers"][1]["groups"]
    assert errors_of(client, request)["layers.1.groups"][0].startswith("missing: the number")


def test_groupnorm_on_2d_data_is_refused_at_its_type(client):
    request = {
        "inputs": [[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]],
        "layers": [{"type": "groupnorm", "groups": 2, "gamma": [1.0] * 4, "beta": [0.0] * 4}],
        "upstream": [[1.0] * 4, [1.0] * 4],
    }
    [message] = errors_of(client, request)["layers.0.type"]
    assert message.startswith(
        "layer 0 is a groupnorm layer, which takes 4-D images, (batch, C, H, W) in the NCHW layout"
    )
    assert "but the inputs is 2-D with 4 features per sample" in message


def test_a_4d_gamma_on_2d_batchnorm_says_it_is_for_images(client):
    request = {
        "inputs": [[1.0, 2.0], [0.0, 1.0]],
        "layers": [
            {"type": "batchnorm", "gamma": [[[[1.0]], [[1.0]]]], "beta": [0.0, 0.0]},
        ],
        "upstream": [[1.0, 1.0], [1.0, 1.0]],
    }
    [message] = errors_of(client, request)["layers.0.gamma"]
    assert message.startswith(
        "got shape (1, 2, 1, 1), expected (2,) or (1, 2): a 4-D gamma is for images"
    )


def test_spatial_running_statistics_of_the_wrong_count_are_refused(client):
    request = conv_norm_network("NCHW", "numpy", "batchnorm")
    request["layers"][1]["running_var"] = [1.0] * 5
    errors = errors_of(client, request)
    assert list(errors) == ["layers.1.running_var"]
    assert "running_var holds one running variance per channel" in errors["layers.1.running_var"][0]


def test_the_unbiased_spatial_variance_counts_n_h_w(client):
    """One sample of 1x2 images has 2 numbers a channel: batch - 1 = 1 is fine; 1x1 is not."""
    ok = {
        "inputs": [[[[1.0, 3.0]]]],
        "layers": [{"type": "batchnorm", "gamma": [1.0], "beta": [0.0], "variance": "unbiased"}],
        "upstream": [[[[1.0, -1.0]]]],
    }
    assert_matches_torch(post(client, ok), ok)
    bad = ok | {"inputs": [[[[1.0]]]], "upstream": [[[[1.0]]]]}
    [message] = errors_of(client, bad)["layers.0.variance"]
    assert "which is 0 with batch x height x width = 1 x 1 x 1 = 1" in message


# -- the cost model: priced before anything runs ----------------------------------------------


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
def test_a_norm_network_holds_no_more_than_its_estimate_in_every_pass(norm):
    rng = np.random.default_rng(9)
    settings = (
        {"running_mean": np.zeros(8), "running_var": np.ones(8)}
        if norm == "batchnorm"
        else {"groups": 4}
    )
    problem = Problem(
        inputs=rng.normal(size=(16, 3, 16, 16)),
        targets=rng.integers(0, 10, size=16),
        layers=(
            Layer(
                "conv2d",
                {"weights": rng.normal(size=(8, 3, 3, 3)), "biases": np.zeros(8)},
                "identity",
                {"stride": (1, 1), "pad": (1, 1)},
            ),
            Layer(norm, {"gamma": np.ones(8), "beta": np.zeros(8)}, "relu", settings),
            Layer("maxpool2d", {}, "identity", {"pool": (2, 2), "stride": (2, 2)}),
            Layer("flatten", {}, "identity", {"channels_last": False}),
            Layer("dense", {"weights": rng.normal(size=(512, 10)) * 0.01}, "softmax"),
        ),
        loss="cross_entropy",
    )
    assert_every_pass_within_estimate(problem)


def padded_conv_network(norm: str | None, pad: int = 300, filters: int = 8) -> dict:
    """A 1x1 image padded by ``pad`` under a 1x1 filter: (1, 8, 601, 601), from a body of a few
    dozen numbers; a norm over it (or none), then a max pool over the whole image, flatten,
    dense."""
    layers = [{"type": "conv2d", "weights": np.ones((filters, 1, 1, 1)).tolist(), "pad": pad}]
    if norm is not None:
        layer = {"type": norm, "gamma": [1.0] * filters, "beta": [0.0] * filters}
        layers.append(layer | ({"groups": 2} if norm == "groupnorm" else {}))
    layers += [
        {"type": "maxpool2d", "pool": 2 * pad + 1},
        {"type": "flatten"},
        {"weights": [[1.0]] * filters, "activation": "identity"},
    ]
    return {
        "inputs": [[[[1.0]]]],
        "layers": layers,
        "targets": [[0.0]],
        "loss": "mse",
        "include": [],
    }


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
def test_a_norm_that_takes_a_request_over_the_memory_limit_is_refused_before_it_runs(
    client, monkeypatch, norm
):
    """The network without the norm fits under the limit (256 MiB), with it it does not: the
    norm's arrays are priced, and the request is refused before anything is allocated."""
    without = estimate(client, "/v1/gradients", orjson.dumps(padded_conv_network(None)))
    with_norm = estimate(client, "/v1/gradients", orjson.dumps(padded_conv_network(norm)))
    assert without.bytes < LIMIT < with_norm.bytes

    def never(*args, **kwargs):
        raise AssertionError("the norm ran")

    monkeypatch.setattr(batchnorm_kind, "over_features", never)
    monkeypatch.setattr(groupnorm_kind, "normalise_rows", never)
    tracemalloc.start()
    try:
        response = client.post("/v1/gradients", json=padded_conv_network(norm))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 422, response.get_data(as_text=True)
    [message] = response.get_json()["errors"]["_request"]
    assert message.startswith("the computation would hold about 309 MiB")
    assert "GRADIENT_MAX_REQUEST_BYTES" in message
    assert peak < 50 * MiB


# -- dropout on images: elementwise, the mask in the client's layout ---------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dropout_on_images_draws_the_seeds_mask_in_the_clients_layout(client, layout):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 3, 4, 5))
    request = single_norm(layout, {"type": "dropout", "keep_prob": 0.6, "seed": 42}, x)
    answer = post(client, request)
    assert_matches_torch(answer, request)  # torch draws default_rng(42).random(shape as sent)
    sent_shape = np.shape(request["inputs"])
    drawn = np.random.default_rng(42).random(sent_shape) < 0.6
    assert np.array_equal(answer["layers"][0]["mask"], drawn.astype(int))
    assert_close(answer["layers"][0]["z"], np.array(request["inputs"]) * drawn / 0.6, "z")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dropout_on_images_with_a_sent_mask_matches_torch_in_a_network(client, layout):
    request = conv_norm_network(layout, "torch", "batchnorm", seed=11)
    mask = (np.random.default_rng(12).random((4, 4, 6, 6)) < 0.7).astype(float)
    dropout = {"type": "dropout", "keep_prob": 0.7, "mask": images(mask, layout)}
    request["layers"].insert(2, dropout)
    answer = post(client, request)
    assert_matches_torch(answer, request)
    assert "mask" not in answer["layers"][2]  # a sent mask is not echoed


def test_a_dropout_mask_not_shaped_like_the_images_is_refused_with_the_layout_shape(client):
    request = conv_norm_network("NHWC", "numpy", "batchnorm")
    request["layers"].insert(
        2, {"type": "dropout", "keep_prob": 0.5, "mask": np.ones((4, 4, 6, 6)).tolist()}
    )
    assert errors_of(client, request) == {
        "layers.2.mask": [
            "got (4, 4, 6, 6), expected (4, 6, 6, 4): the mask covers the layer's input, "
            "(N, H, W, C) images in the NHWC layout. The batch is 4 (from the inputs) and "
            "layer 1's output are 4 channel(s) of 6x6."
        ]
    }


def test_a_4d_dropout_mask_entry_that_is_not_0_or_1_is_named_by_its_index(client):
    request = conv_norm_network("NCHW", "numpy", "batchnorm")
    mask = np.ones((4, 4, 6, 6))
    mask[1, 2, 3, 4] = 0.5
    request["layers"].insert(2, {"type": "dropout", "keep_prob": 0.5, "mask": mask.tolist()})
    [message] = errors_of(client, request)["layers.2.mask"]
    assert message.startswith("mask[1][2][3][4] is 0.5: every entry must be 0")


def test_dropout_on_images_holds_no_more_than_its_estimate_in_every_pass():
    from service.core.layers.dropout import dropout_layer

    rng = np.random.default_rng(13)
    problem = Problem(
        inputs=rng.normal(size=(16, 3, 16, 16)),
        targets=rng.integers(0, 10, size=16),
        layers=(
            dropout_layer(0.8, seed=5, channels_last=True, activation="relu"),
            Layer("maxpool2d", {}, "identity", {"pool": (2, 2), "stride": (2, 2)}),
            Layer("flatten", {}, "identity", {"channels_last": True}),
            Layer("dense", {"weights": rng.normal(size=(192, 10)) * 0.01}, "softmax"),
        ),
        loss="cross_entropy",
    )
    assert_every_pass_within_estimate(problem)


# -- every field, every endpoint: an answer or a 422, never a 500 ------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_base64_answers_carry_4d_gamma_gradients_in_the_shapes_sent(client, layout):
    request = conv_norm_network(layout, "numpy", "groupnorm") | {"encoding": "base64"}
    answer = post(client, request)
    four_d = [1, 1, 1, 4] if layout == "NHWC" else [1, 4, 1, 1]
    assert answer["layers"][1]["dgamma"]["shape"] == four_d
    assert answer["layers"][1]["dbeta"]["shape"] == [4]


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
@pytest.mark.parametrize("path", ["/v1/gradients", "/v1/check"])
def test_any_norm_field_replaced_or_removed_is_an_answer_or_a_422_never_a_500(client, path, norm):
    base = conv_norm_network("NHWC", "numpy", norm)
    base["layers"][1] |= {"mode": "train", "running_mean": [0.0] * 4, "running_var": [1.0] * 4}
    if norm == "groupnorm":
        for name in ("mode", "running_mean", "running_var"):
            del base["layers"][1][name]
    if path == "/v1/check":
        del base["include"]
        base["submission"] = {"layers": [{}, {"dgamma": [1.0] * 4, "dx": [[1.0]]}, {}, {}, {}]}
    oddities = [None, "x", [], 0, -1, 2, 4, 1.5, [[1.0]], [1, 2], {"a": 1}, True]
    shapes = [np.ones(s).tolist() for s in ((4,), (1, 4), (4, 1), (1, 4, 1, 1), (1, 1, 1, 4))]
    statuses = set()
    names = [*base["layers"][1], "groups", "mode", "variance", "momentum", "eps"]
    for name in names:
        for value in [*oddities, *shapes, ...]:
            request = copy.deepcopy(base)
            if value is ...:
                request["layers"][1].pop(name, None)
            else:
                request["layers"][1][name] = value
            response = client.post(path, json=request)
            assert response.status_code in (200, 422), (name, value, response.get_json())
            statuses.add(response.status_code)
    assert statuses == {200, 422}
