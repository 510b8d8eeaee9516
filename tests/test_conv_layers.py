"""Issue 15, first step: 4-D data, conv2d, max and average pooling, flatten.

Every number is PyTorch float64's (F.conv2d, F.max_pool2d, F.avg_pool2d, permuted for NHWC),
through tests/torch_reference.py, which is fed the request exactly as sent; CS231n's own
published conv_forward_naive output is reproduced; every shape mistake is a 422 at its
field; a convolution whose unfolded input would not fit is refused before it is unfolded.
"""

from __future__ import annotations

import copy
import tracemalloc

import numpy as np
import pytest

from service.core import Problem
from service.core.layers import conv2d as conv2d_kind
from service.core.problem import Layer
from tests.memory_cases import assert_every_pass_within_estimate
from tests.problems import post
from tests.torch_reference import assert_close, assert_matches_torch

LAYOUTS = ("NCHW", "NHWC")
ALL = ["z", "a", "dz", "dx"]
MiB = 2**20


def errors_of(client, request: dict, path: str = "/v1/gradients") -> dict:
    response = client.post(path, json=request)
    assert response.status_code == 422, response.get_data(as_text=True)
    return response.get_json()["errors"]


def images(x: np.ndarray, layout: str) -> list:
    """Canonical (N, C, H, W) in the client's layout."""
    return (x.transpose(0, 2, 3, 1) if layout == "NHWC" else x).tolist()


def filters(w: np.ndarray, layout: str) -> list:
    """Canonical (F, C, HH, WW) in the client's layout: Ng's (HH, WW, C, F) in NHWC."""
    return (w.transpose(2, 3, 1, 0) if layout == "NHWC" else w).tolist()


def dense(w: np.ndarray, b: np.ndarray, activation: str, convention: str) -> dict:
    if convention == "numpy":
        return {"weights": w.tolist(), "biases": b.tolist(), "activation": activation}
    column = convention == "columns"
    biases = b.reshape(-1, 1) if column else b
    return {"weights": w.T.tolist(), "biases": biases.tolist(), "activation": activation}


def conv_pool_network(layout: str, convention: str, seed: int = 0) -> dict:
    """conv (rectangular 3x2 filters, stride [2, 3], pad [1, 2], tanh) - max pool [2, 1]
    stride [1, 2] - avg pool 2 stride 1 - flatten - dense (softmax), mse targets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, 2, 9, 10))
    w = rng.normal(size=(4, 2, 3, 2)) * 0.5
    # conv: (9 + 2 - 3) / 2 + 1 = 5, (10 + 4 - 2) / 3 + 1 = 5; max pool: 4 x 3; avg: 3 x 2
    n_flat, n_out = 4 * 3 * 2, 5
    targets = rng.random(size=(3, n_out))
    return {
        "layout": layout,
        "convention": convention,
        "inputs": images(x, layout),
        "layers": [
            {
                "type": "conv2d",
                "weights": filters(w, layout),
                "biases": rng.normal(size=4).tolist(),
                "stride": [2, 3],
                "pad": [1, 2],
                "activation": "tanh",
            },
            {"type": "maxpool2d", "pool": [2, 1], "stride": [1, 2]},
            {"type": "avgpool2d", "pool": 2, "stride": 1},
            {"type": "flatten"},
            dense(rng.normal(size=(n_flat, n_out)), rng.normal(size=n_out), "sigmoid", convention),
        ],
        "targets": (targets.T if convention == "columns" else targets).tolist(),
        "loss": "mse",
        "include": ALL,
    }


@pytest.mark.parametrize("convention", ["numpy", "torch", "columns"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv_and_pools_with_strides_pads_and_rectangles_match_torch(client, layout, convention):
    request = conv_pool_network(layout, convention)
    answer = post(client, request)
    assert_matches_torch(answer, request)
    conv = answer["layers"][0]
    if layout == "NHWC":  # the client's shapes: Ng's W, and 4-D data channels last
        assert np.shape(conv["dW"]) == (3, 2, 2, 4)
        assert np.shape(conv["z"]) == (3, 5, 5, 4)
        assert np.shape(conv["dx"]) == (3, 9, 10, 2)
    else:
        assert np.shape(conv["dW"]) == (4, 2, 3, 2)
        assert np.shape(conv["z"]) == (3, 4, 5, 5)
    assert np.shape(answer["layers"][3]["a"]) == ((24, 3) if convention == "columns" else (3, 24))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_learning_rate_steps_the_filters_in_the_shapes_sent(client, layout):
    request = conv_pool_network(layout, "numpy", seed=1) | {"learning_rate": 0.3}
    answer = post(client, request)
    assert_matches_torch(answer, request)  # updated_layers = sent - 0.3 * torch's gradient
    assert [set(layer) for layer in answer["updated_layers"]] == [
        {"weights", "biases"},
        set(),
        set(),
        set(),
        {"weights", "biases"},
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_gradient_check_agrees_on_every_conv_parameter_and_input(client, layout):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 2, 5, 5))  # conv: (5 - 2) + 1 = 4, (5 + 2 - 3) / 2 + 1 = 3
    request = {
        "layout": layout,
        "inputs": images(x, layout),
        "layers": [
            {
                "type": "conv2d",
                "weights": filters(rng.normal(size=(3, 2, 2, 3)), layout),
                "biases": rng.normal(size=3).tolist(),
                "stride": [1, 2],
                "pad": [0, 1],
                "activation": "tanh",
            },
            {"type": "avgpool2d", "pool": [2, 1]},
            {"type": "flatten"},
            {"weights": rng.normal(size=(18, 2)).tolist(), "activation": "identity"},
        ],
        "targets": rng.normal(size=(2, 2)).tolist(),
        "loss": "mse",
        "include": ["dx"],
        "gradient_check": True,
    }
    answer = post(client, request)
    assert_matches_torch(answer, request)
    check = answer["gradient_check"]
    assert set(check["layers"][0]) == {"dW", "db", "dx"}
    assert check["max_relative_error"] < 1e-6


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cs231n_three_layer_convnet_with_class_labels_matches_torch(client, layout):
    """conv 3x3 pad 1 - relu - 2x2 max pool - flatten - dense - relu - dense - softmax, with
    CS231n's l2 (reg * sum(W * W), on the filters as on the dense weights)."""
    rng = np.random.default_rng(3)
    n, c, h, w, f, hidden, classes = 4, 3, 8, 8, 5, 7, 4
    x = rng.normal(size=(n, c, h, w))
    request = {
        "layout": layout,
        "inputs": images(x, layout),
        "layers": [
            {
                "type": "conv2d",
                "weights": filters(rng.normal(size=(f, c, 3, 3)) * 0.3, layout),
                "biases": rng.normal(size=f).tolist(),
                "pad": 1,
                "activation": "relu",
            },
            {"type": "maxpool2d", "pool": 2},
            {"type": "flatten"},
            {
                "weights": (rng.normal(size=(f * 4 * 4, hidden)) * 0.1).tolist(),
                "biases": rng.normal(size=hidden).tolist(),
                "activation": "relu",
            },
            {
                "weights": rng.normal(size=(hidden, classes)).tolist(),
                "biases": rng.normal(size=classes).tolist(),
                "activation": "softmax",
            },
        ],
        "targets": [0, 3, 1, 2],
        "loss": "cross_entropy",
        "l2": 0.01,
        "l2_style": "full",
        "include": ALL,
    }
    answer = post(client, request)
    assert_matches_torch(answer, request)


def test_the_flatten_order_follows_the_layout_so_nhwc_weights_line_up_with_ngs():
    """The same images and filters in both layouts: z agrees after the conv, and the dense
    layer after the flatten sees the NHWC order (x.reshape(m, -1) of (m, H, W, C))."""
    from service import create_app

    client = create_app({"TESTING": True}).test_client()
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 3, 3))
    answers = {}
    for layout in LAYOUTS:
        request = {
            "layout": layout,
            "inputs": images(x, layout),
            "layers": [
                {"type": "conv2d", "weights": filters(w, layout), "pad": 1},
                {"type": "flatten"},
            ],
            "upstream": np.ones((2, 32)).tolist(),
            "include": ["z", "a"],
        }
        answers[layout] = post(client, request)
    z_nchw = np.array(answers["NCHW"]["layers"][0]["z"])
    assert_close(np.array(answers["NHWC"]["layers"][0]["z"]), z_nchw.transpose(0, 2, 3, 1), "z")
    assert_close(answers["NCHW"]["layers"][1]["a"], z_nchw.reshape(2, -1), "NCHW flatten")
    assert_close(
        answers["NHWC"]["layers"][1]["a"], z_nchw.transpose(0, 2, 3, 1).reshape(2, -1), "NHWC"
    )


def test_cs231n_conv_forward_naive_published_output_is_reproduced(client):
    """CS231n assignment 2, ConvolutionalNetworks.ipynb: x, w, b from np.linspace, stride 2,
    pad 1; its correct_out printed to 8 decimals (the notebook expects a difference ~1e-8)."""
    x = np.linspace(-0.1, 0.5, num=2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=3 * 3 * 4 * 4).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3)
    correct_out = np.array(
        [
            [
                [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
            ],
            [
                [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
            ],
        ]
    )
    request = {
        "inputs": x.tolist(),
        "layers": [
            {"type": "conv2d", "weights": w.tolist(), "biases": b.tolist(), "stride": 2, "pad": 1}
        ],
        "upstream": np.ones((2, 3, 2, 2)).tolist(),
        "include": ["z"],
    }
    z = np.array(post(client, request)["layers"][0]["z"])
    np.testing.assert_allclose(z, correct_out, rtol=0, atol=5e-9)  # half the last decimal


#: Andrew Ng's Deep Learning Specialization, course 4 week 1, "Convolutional Neural Networks:
#: Step by Step" -- the published expected outputs as stored in
#: vvaquero/Coursera_DeepLearning.ai, Convolution_model_Step_by_Step_v2.ipynb (commit 965ca68)
NG_NOTEBOOK = "vvaquero/Coursera_DeepLearning.ai Convolution_model_Step_by_Step_v2.ipynb"


def ng_conv_request() -> dict:
    """Ng's seeded conv_forward example, as his notebook draws it: np.random.seed(1);
    A_prev (10, 4, 4, 3), W (2, 2, 3, 8), b (1, 1, 1, 8); pad 2, stride 2."""
    np.random.seed(1)
    a_prev = np.random.randn(10, 4, 4, 3)
    w = np.random.randn(2, 2, 3, 8)
    b = np.random.randn(1, 1, 1, 8)
    request = {
        "layout": "NHWC",
        "inputs": a_prev.tolist(),
        "layers": [
            {"type": "conv2d", "weights": w.tolist(), "biases": b.tolist(), "pad": 2, "stride": 2}
        ],
        "include": ["z", "dx"],
    }
    return request


def test_ngs_conv_forward_published_z_mean_and_z_3_2_1_are_reproduced(client):
    """Ng's conv_forward check (NG_NOTEBOOK above): "Z's mean = 0.0489952035289" and
    "Z[3,2,1] = [-0.61490741 -6.7439236 -2.55153897 1.75698377 3.56208902 0.53036437
    5.18531798 8.75898442]", through /v1/gradients with "layout": "NHWC", Ng's W (f, f,
    n_C_prev, n_C) and b (1, 1, 1, n_C) as sent; the upstream is the all-ones gradient."""
    request = ng_conv_request()
    request["upstream"] = np.ones((10, 4, 4, 8)).tolist()  # n_H = (4 - 2 + 2*2) / 2 + 1 = 4
    answer = post(client, request)
    z = np.array(answer["layers"][0]["z"])
    assert z.shape == (10, 4, 4, 8)
    np.testing.assert_allclose(np.mean(z), 0.0489952035289, rtol=0, atol=5e-14)  # 13 decimals
    expected = [
        -0.61490741, -6.7439236, -2.55153897, 1.75698377,
        3.56208902, 0.53036437, 5.18531798, 8.75898442,
    ]  # fmt: skip
    np.testing.assert_allclose(z[3, 2, 1], expected, rtol=0, atol=5e-9)  # 8 decimals
    assert_matches_torch(answer, request)


def test_ngs_conv_backward_published_means_are_reproduced(client):
    """Ng's conv_backward check (NG_NOTEBOOK above): with dZ = Z of his conv_forward example,
    "dA_mean = 1.45243777754", "dW_mean = 1.72699145831", "db_mean = 7.83923256462"; the
    service's dx is his dA_prev, its dW his dW (2, 2, 3, 8) and db his (1, 1, 1, 8)."""
    request = ng_conv_request()
    request["upstream"] = np.ones((10, 4, 4, 8)).tolist()
    z = post(client, request)["layers"][0]["z"]
    request["upstream"] = z  # his conv_backward(Z, cache_conv): dZ = Z, so Z is sent back
    answer = post(client, request)
    conv = answer["layers"][0]
    assert np.shape(conv["dW"]) == (2, 2, 3, 8) and np.shape(conv["db"]) == (1, 1, 1, 8)
    np.testing.assert_allclose(np.mean(conv["dx"]), 1.45243777754, rtol=0, atol=5e-12)
    np.testing.assert_allclose(np.mean(conv["dW"]), 1.72699145831, rtol=0, atol=5e-12)
    np.testing.assert_allclose(np.mean(conv["db"]), 7.83923256462, rtol=0, atol=5e-12)
    assert_matches_torch(answer, request)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "maxpool2d",
            [[[[1.74481176, 0.86540763, 1.13376944]]], [[[1.13162939, 1.51981682, 2.18557541]]]],
        ),
        (
            "avgpool2d",
            [[[[0.02105773, -0.20328806, -0.40389855]]], [[[-0.22154621, 0.51716526, 0.48155844]]]],
        ),
    ],
)
def test_ngs_pool_forward_published_output_is_reproduced(client, kind, expected):
    """Ng's pool_forward check (NG_NOTEBOOK above): np.random.seed(1); A_prev (2, 4, 4, 3);
    f 3, stride 2, modes max and average: A printed to 8 decimals."""
    np.random.seed(1)
    a_prev = np.random.randn(2, 4, 4, 3)
    request = {
        "layout": "NHWC",
        "inputs": a_prev.tolist(),
        "layers": [{"type": kind, "pool": 3, "stride": 2}],
        "upstream": np.ones((2, 1, 1, 3)).tolist(),
        "include": ["z"],
    }
    answer = post(client, request)
    np.testing.assert_allclose(answer["layers"][0]["z"], expected, rtol=0, atol=5e-9)


@pytest.mark.parametrize(
    ("kind", "ties", "expected"),
    [
        ("maxpool2d", "all", [[0.0, 0.0], [5.05844394, -1.68282702], [0.0, 0.0]]),
        (
            "avgpool2d",
            None,
            [[0.08485462, 0.2787552], [1.26461098, -0.25749373], [1.17975636, -0.53624893]],
        ),
    ],
)
def test_ngs_pool_backward_published_da_prev_is_reproduced(client, kind, ties, expected):
    """Ng's pool_backward check (NG_NOTEBOOK above): np.random.seed(1); A_prev (5, 5, 3, 2),
    f 2, stride 1; dA = np.random.randn(5, 4, 2, 2) drawn next ("mean of dA =
    0.145713902729"); dA_prev[1, 1] printed to 8 decimals for modes max (his mask
    x == np.max(x): "ties": "all") and average."""
    np.random.seed(1)
    a_prev = np.random.randn(5, 5, 3, 2)
    d_a = np.random.randn(5, 4, 2, 2)
    np.testing.assert_allclose(np.mean(d_a), 0.145713902729, rtol=0, atol=5e-13)
    layer = {"type": kind, "pool": 2, "stride": 1} | ({"ties": ties} if ties else {})
    request = {
        "layout": "NHWC",
        "inputs": a_prev.tolist(),
        "layers": [layer],
        "upstream": d_a.tolist(),
        "include": ["dx"],
    }
    answer = post(client, request)
    dx = np.array(answer["layers"][0]["dx"])
    assert dx.shape == (5, 5, 3, 2)
    np.testing.assert_allclose(dx[1, 1], expected, rtol=0, atol=5e-9)
    assert_matches_torch(answer, request)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_single_conv_layer_with_upstream_is_cs231n_conv_backward(client, layout):
    """CS231n's conv_backward_naive check: x (4, 3, 5, 5), w (2, 3, 3, 3), dout (4, 2, 5, 5),
    stride 1, pad 1: dx, dw, db against torch."""
    rng = np.random.default_rng(231)
    x, w, b = rng.normal(size=(4, 3, 5, 5)), rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2)
    dout = rng.normal(size=(4, 2, 5, 5))
    request = {
        "layout": layout,
        "inputs": images(x, layout),
        "layers": [
            {"type": "conv2d", "weights": filters(w, layout), "biases": b.tolist(), "pad": 1}
        ],
        "upstream": images(dout, layout),
        "include": ["dx"],
    }
    answer = post(client, request)
    assert answer["loss"] is None
    assert_matches_torch(answer, request)


def test_ngs_bias_shape_and_a_bias_free_conv_answer_in_the_shapes_sent(client):
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(2, 4, 4, 3)), rng.normal(size=(2, 2, 3, 8))  # Ng's A_prev, W
    request = {
        "layout": "NHWC",
        "inputs": x.tolist(),
        "layers": [
            {"type": "conv2d", "weights": w.tolist(), "biases": rng.normal(size=(1, 1, 1, 8))},
            {"type": "conv2d", "weights": rng.normal(size=(1, 1, 8, 2)).tolist()},
        ],
        "upstream": rng.normal(size=(2, 3, 3, 2)).tolist(),
    }
    request["layers"][0]["biases"] = request["layers"][0]["biases"].tolist()
    answer = post(client, request)
    assert_matches_torch(answer, request)
    assert np.shape(answer["layers"][0]["db"]) == (1, 1, 1, 8)
    assert np.shape(answer["layers"][0]["dW"]) == (2, 2, 3, 8)
    assert set(answer["layers"][1]) == {"a", "dW"}  # no bias, no db


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ties", ["first", "all"])
def test_max_pool_ties_go_to_the_first_maximum_or_to_every_tied_one(client, layout, ties):
    x = np.array([[[[1.0, 1.0, 0.0], [1.0, 0.0, 2.0], [2.0, 2.0, 2.0]]]])  # ties everywhere
    request = {
        "layout": layout,
        "inputs": images(x, layout),
        "layers": [{"type": "maxpool2d", "pool": 2, "stride": 1, "ties": ties}],
        "upstream": images(np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]), layout),
        "include": ["z", "dx"],
    }
    answer = post(client, request)
    assert_matches_torch(answer, request)
    first = [[1.0, 0.0, 0.0], [0.0, 0.0, 1010.0], [100.0, 0.0, 0.0]]
    every = [[1.0, 1.0, 0.0], [1.0, 0.0, 1010.0], [100.0, 1100.0, 1000.0]]
    expected = np.array([[first if ties == "first" else every]])
    assert_close(answer["layers"][0]["dx"], images(expected, layout), "dx")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_pool_drops_the_windows_that_do_not_fit(client, layout):
    x = np.arange(2 * 7 * 5, dtype=float).reshape(1, 2, 7, 5)
    for kind in ("maxpool2d", "avgpool2d"):
        request = {
            "layout": layout,
            "inputs": images(x, layout),
            "layers": [{"type": kind, "pool": [3, 2], "stride": [2, 2]}],
            "upstream": images(np.ones((1, 2, 3, 2)), layout),  # (7-3)//2+1, (5-2)//2+1
            "include": ["z", "dx"],
        }
        assert_matches_torch(post(client, request), request)


# -- errors: a 422 at the exact path, never a 500 --------------------------------------------


def test_a_conv_output_size_that_is_not_whole_names_the_pad_or_stride_that_fixes_it(client):
    request = conv_pool_network("NCHW", "numpy")
    request["layers"][0]["pad"] = [1, 1]  # width: (10 + 2 - 2) / 3 + 1 = 4.33
    errors = errors_of(client, request)
    assert list(errors) == ["layers.0"]
    [message] = errors["layers.0"]
    assert message == (
        "the output width (H + 2*pad - HH) / stride + 1 = (10 + 2*1 - 2) / 3 + 1 = 4.33333 is "
        "not whole: the last window would hang over the padded input. A pad of 2 on the width "
        "axis or a stride of 2 would make it whole."
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_channels_that_do_not_chain_are_refused_at_the_weights(client, layout):
    request = conv_pool_network(layout, "numpy")
    w = np.zeros((4, 3, 3, 2))  # 3 channels; the inputs have 2
    request["layers"][0]["weights"] = filters(w, layout)
    errors = errors_of(client, request)
    [message] = errors["layers.0.weights"]
    expected = "(3, 2, 2, 4)" if layout == "NHWC" else "(4, 2, 3, 2)"
    assert "filters of 3 channel(s), but the inputs are 2 channel(s) of 9x10" in message
    assert f"the weights must be {expected}" in message


def test_nhwc_filters_sent_without_the_layout_get_the_layout_hint(client):
    request = {  # NCHW is read: the filters (2, 2, 3, 8) are Ng's (HH, WW, C, F)
        "inputs": np.zeros((1, 3, 4, 4)).tolist(),
        "layers": [{"type": "conv2d", "weights": np.zeros((2, 2, 3, 8)).tolist()}],
        "upstream": np.zeros((1, 2, 3, 3)).tolist(),
    }
    [message] = errors_of(client, request)["layers.0.weights"]
    assert message == (
        "got shape (2, 2, 3, 8): filters of 2 channel(s), but the inputs are 3 channel(s) of "
        "4x4, so in the NCHW layout the weights must be (2, 3, 3, 8) ((F, C, HH, WW)). They "
        'look like NHWC weights: set "layout" to "NHWC" (and send the inputs in it), or '
        "transpose them."
    )


def test_a_dense_layer_after_a_flatten_is_checked_against_the_flattened_width(client):
    request = conv_pool_network("NCHW", "numpy")
    request["layers"][4]["weights"] = np.zeros((20, 5)).tolist()
    errors = errors_of(client, request)
    [message] = errors["layers.4.weights"]
    assert message.startswith(
        "got shape (20, 5), but layer 3 flattens 4 channel(s) of 3x2 into 24 units (in NCHW "
        "order), so the weights must be (24, n_out)"
    )


@pytest.mark.parametrize("kind", ["dense", "layernorm"])
def test_a_4d_input_to_a_2d_only_layer_asks_for_a_flatten(client, kind):
    """(batchnorm and dropout take 4-D data: tests/test_spatial_norms.py)"""
    layer = {
        "dense": {"weights": [[0.0]], "activation": "identity"},
        "layernorm": {"type": "layernorm", "gamma": [1.0], "beta": [0.0]},
    }[kind]
    request = {
        "inputs": np.zeros((2, 1, 3, 3)).tolist(),
        "layers": [layer],
        "upstream": [[0.0], [0.0]],
    }
    errors = errors_of(client, request)
    [message] = errors["layers.0.type"]
    assert message.startswith(
        f"layer 0 is a {kind} layer, which takes 2-D data (batch, n), but the inputs is 4-D "
        "images, (batch, 1, 3, 3) in the NCHW layout."
    )
    assert '{"type": "flatten"}' in message


def test_an_image_layer_after_a_flatten_is_refused_at_its_type(client):
    request = conv_pool_network("NCHW", "numpy")
    request["layers"].insert(4, {"type": "maxpool2d", "pool": 2})
    errors = errors_of(client, request)
    assert "layer 4 is a maxpool2d layer, which takes 4-D images" in errors["layers.4.type"][0]


def test_a_loss_on_4d_output_asks_for_flatten_and_dense_or_upstream(client):
    request = conv_pool_network("NCHW", "numpy")
    request["layers"] = request["layers"][:1]
    errors = errors_of(client, request)
    assert errors["loss"][0].startswith(
        "a loss takes 2-D scores (batch, classes), but layer 0's output is 4-D images, "
        "(3, 4, 5, 5) in the NCHW layout."
    )


@pytest.mark.parametrize(
    ("change", "path", "start"),
    [
        ({"layout": "NWHC"}, "layout", "unknown layout"),
        ({"layers.0.stride": 0}, "layers.0.stride", "the stride must be at least 1"),
        ({"layers.0.pad": [1, 2, 3]}, "layers.0.pad", "expected a whole number or a [height"),
        ({"layers.0.biases": [0.0, 0.0]}, "layers.0.biases", "got shape (2,), expected (4,)"),
        ({"layers.1.pool": [6, 1]}, "layers.1.pool", "the window 6 x 1 is larger than the input"),
        ({"layers.1.ties": "some"}, "layers.1.ties", "unknown ties"),
        ({"layers.2.ties": "all"}, "layers.2.ties", "unknown field"),
        ({"upstream": [[0.0]]}, "upstream", "upstream was sent together with"),
    ],
)
def test_every_image_field_mistake_is_a_422_at_its_path(client, change, path, start):
    request = conv_pool_network("NCHW", "numpy")
    for key, value in change.items():
        *parents, name = key.split(".")
        node = request
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[name] = value
    errors = errors_of(client, request)
    assert path in errors, errors
    assert errors[path][0].lower().startswith(start.lower()), errors[path]


def test_a_4d_upstream_of_the_wrong_shape_says_the_layout_shape(client):
    request = {
        "layout": "NHWC",
        "inputs": np.zeros((2, 4, 4, 3)).tolist(),
        "layers": [{"type": "maxpool2d", "pool": 2}],
        "upstream": np.zeros((2, 3, 2, 2)).tolist(),
    }
    [message] = errors_of(client, request)["upstream"]
    assert message.startswith("got shape (2, 3, 2, 2), expected (2, 2, 2, 3)")


def test_check_grades_conv_fields_pass_and_fail_without_a_500(client):
    request = conv_pool_network("NHWC", "numpy")
    answer = post(client, request)
    problem = {k: v for k, v in request.items() if k != "include"}
    right, wrong = answer["layers"][0], answer["layers"][4]
    submission = {
        "loss": answer["loss"],
        "layers": [
            {"dW": right["dW"], "db": right["db"], "z": right["z"], "dx": right["dx"]},
            {"a": answer["layers"][1]["a"]},
            {},
            {},
            {"dW": (np.array(wrong["dW"]) * 2).tolist()},
        ],
    }
    response = client.post("/v1/check", json=problem | {"submission": submission})
    assert response.status_code == 200, response.get_data(as_text=True)
    results = {r["field"]: r["passed"] for r in response.get_json()["results"]}
    assert results == {
        "loss": True,
        "layers.0.z": True,
        "layers.0.dx": True,
        "layers.0.dW": True,
        "layers.0.db": True,
        "layers.1.a": True,
        "layers.4.dW": False,
    }


# -- the cost model: the unfolded input is priced before anything is allocated ---------------


def test_a_conv_whose_unfolded_input_would_not_fit_is_refused_before_it_is_unfolded(
    client, monkeypatch
):
    def never(*args, **kwargs):
        raise AssertionError("the input was unfolded")

    monkeypatch.setattr(conv2d_kind, "unfold", never)
    # a 1x1 image padded by 99 under 100x100 filters: 100 x 100 windows of 10,000 numbers,
    # 10^8 numbers (800 MB) unfolded from a body of 10,001 numbers
    request = {
        "inputs": [[[[1.0]]]],
        "layers": [{"type": "conv2d", "weights": np.zeros((1, 1, 100, 100)).tolist(), "pad": 99}],
        "upstream": np.zeros((1, 1, 100, 100)).tolist(),
    }
    tracemalloc.start()
    try:
        response = client.post("/v1/gradients", json=request)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 422, response.get_data(as_text=True)
    [message] = response.get_json()["errors"]["_request"]
    assert "its input unfolded to 10,000 x 10,000" in message
    assert "GRADIENT_MAX_REQUEST_BYTES" in message
    assert peak < 50 * MiB


def test_a_conv_network_holds_no_more_than_its_estimate_in_every_pass():
    rng = np.random.default_rng(6)
    problem = Problem(
        inputs=rng.normal(size=(16, 3, 16, 16)),
        targets=rng.integers(0, 10, size=16),
        layers=(
            Layer(
                "conv2d",
                {"weights": rng.normal(size=(8, 3, 5, 5)), "biases": np.zeros(8)},
                "relu",
                {"stride": (1, 1), "pad": (2, 2)},
            ),
            Layer("maxpool2d", {}, "identity", {"pool": (2, 2), "stride": (2, 2)}),
            Layer("flatten", {}, "identity", {"channels_last": False}),
            Layer("dense", {"weights": rng.normal(size=(512, 10)) * 0.01}, "softmax"),
        ),
        loss="cross_entropy",
    )
    assert_every_pass_within_estimate(problem)


@pytest.mark.parametrize("path", ["/v1/gradients", "/v1/check"])
def test_any_image_layer_field_replaced_or_removed_is_an_answer_or_a_422_never_a_500(client, path):
    base = conv_pool_network("NHWC", "numpy")
    if path == "/v1/check":
        del base["include"]
        base["submission"] = {"layers": [{"dW": base["layers"][0]["weights"]}, {}, {}, {}, {}]}
    oddities = [None, "x", [], 0, -1, 2, 1.5, [[1.0]], [1, 2], {"a": 1}, True]
    statuses = set()
    for i in range(4):
        for name in [*base["layers"][i], "stride", "pad", "pool", "ties"]:
            for value in [*oddities, ...]:
                request = copy.deepcopy(base)
                if value is ...:
                    request["layers"][i].pop(name, None)
                else:
                    request["layers"][i][name] = value
                response = client.post(path, json=request)
                assert response.status_code in (200, 422), (i, name, value, response.get_json())
                statuses.add(response.status_code)
    for name in ("inputs", "upstream", "targets", "layout", "loss"):
        for value in [*oddities, [[[1.0]]], [[[[1.0]]]], np.zeros((3, 9, 10, 3)).tolist(), ...]:
            request = copy.deepcopy(base)
            if value is ...:
                request.pop(name, None)
            else:
                request[name] = value
            response = client.post(path, json=request)
            assert response.status_code in (200, 422), (name, value, response.get_json())
    assert statuses == {200, 422}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_base64_answers_carry_4d_arrays_in_the_layout(client, layout):
    request = conv_pool_network(layout, "numpy") | {"encoding": "base64"}
    answer = post(client, request)
    conv = answer["layers"][0]
    assert conv["dx"]["shape"] == ([3, 9, 10, 2] if layout == "NHWC" else [3, 2, 9, 10])
    assert conv["dW"]["shape"] == ([3, 2, 2, 4] if layout == "NHWC" else [4, 2, 3, 2])
