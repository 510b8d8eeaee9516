"""POST /v1/exercises with "layers": problems with every layer kind (issue 13, item 7).

Each generated problem is a valid /v1/gradients request whose answer is the exercise's
solution, byte for byte, and agrees with PyTorch float64 autograd.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import orjson
import pytest

from service.core.cost import NetworkShape
from service.core.exercise_layers import MIN_VARIANCE, generate_layered, network_shape
from service.routes import autograder
from tests.conftest import ROOT
from tests.torch_reference import assert_matches_torch

CONVENTIONS = ("numpy", "torch", "columns")
RUNNING = ("running_mean", "running_var")

#: one network per layer kind (and variant), each ending in a loss over 3 classes
KINDS = {
    "dense_without_bias": [
        {"units": 4, "activation": "tanh", "bias": False},
        {"units": 3, "activation": "softmax", "bias": False},
    ],
    "batchnorm_train_biased": [
        {"units": 4, "activation": "identity"},
        {"type": "batchnorm", "activation": "relu"},
        {"units": 3, "activation": "softmax"},
    ],
    "batchnorm_train_unbiased_running": [
        {"type": "batchnorm", "variance": "unbiased", "running": True, "momentum": 0.8},
        {"units": 3, "activation": "softmax"},
    ],
    "batchnorm_eval": [
        {"units": 4, "activation": "relu"},
        {"type": "batchnorm", "mode": "eval", "eps": 0.001},
        {"units": 3, "activation": "softmax"},
    ],
    "layernorm": [
        {"units": 4, "activation": "relu"},
        {"type": "layernorm", "activation": "tanh"},
        {"units": 3, "activation": "softmax"},
    ],
    "dropout": [
        {"units": 5, "activation": "relu"},
        {"type": "dropout", "keep_prob": 0.7},
        {"units": 3, "activation": "softmax"},
    ],
}


def body(layers, **changes) -> dict:
    return {
        "seed": 7,
        "n_in": 3,
        "layers": layers,
        "loss": "cross_entropy",
        "targets": "labels",
        "batch_size": 6,
    } | changes


def exercise(client, **changes) -> dict:
    response = client.post("/v1/exercises", json=body(KINDS["batchnorm_train_biased"]) | changes)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assert_is_the_gradients_answer_and_torchs(client, answer: dict) -> None:
    problem, solution = answer["problem"], answer["solution"]
    gradients = client.post("/v1/gradients", json=problem)
    assert gradients.status_code == 200, gradients.get_json()
    assert gradients.get_json() == solution
    assert_matches_torch(solution, problem)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_layer_kind_gives_a_problem_whose_solution_is_the_gradients_answer_and_torchs(
    client, kind, convention
):
    answer = exercise(client, layers=KINDS[kind], convention=convention)
    assert_is_the_gradients_answer_and_torchs(client, answer)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(
    ("loss", "last", "targets"),
    [
        ("mse", "tanh", "dense"),
        ("half_mse", "identity", "dense"),
        ("bce", "sigmoid", "dense"),
        ("hinge", "identity", "dense"),
        ("cross_entropy", "softmax", "dense"),
        ("cross_entropy", "softmax", "labels"),
        ("svm", "identity", "dense"),
        ("svm", "identity", "labels"),
    ],
)
def test_every_loss_and_target_form_is_the_gradients_answer_and_torchs(
    client, loss, last, targets, convention
):
    layers = [
        {"units": 4, "activation": "relu", "bias": False},
        {"type": "batchnorm"},
        {"type": "dropout", "keep_prob": 0.8},
        {"units": 3, "activation": last},
    ]
    answer = exercise(
        client, layers=layers, loss=loss, targets=targets, convention=convention, reduction="sum"
    )
    assert_is_the_gradients_answer_and_torchs(client, answer)


@pytest.mark.parametrize("dz_scale", ["reduced", "per_sample"])
def test_dz_scale_and_decimals_reach_the_problem_and_its_solution(client, dz_scale):
    answer = exercise(client, dz_scale=dz_scale, decimals=2, convention="columns")
    problem = answer["problem"]
    assert problem.get("dz_scale", "reduced") == dz_scale
    numbers = np.concatenate(
        [np.ravel(problem["inputs"])]
        + [
            np.ravel(layer[k])
            for layer in problem["layers"]
            for k in layer
            if k in ("weights", "biases", "gamma", "beta")
        ]
    )
    np.testing.assert_array_equal(numbers, np.round(numbers, 2))
    assert client.post("/v1/gradients", json=problem).get_json() == answer["solution"]


def test_the_same_layered_request_gives_the_same_bytes_in_another_process(client, tmp_path):
    dropout = KINDS["dropout"]
    request = body([*dropout[:2], {"type": "layernorm"}, dropout[2]], decimals=3)
    out = tmp_path / "answer.json"
    script = (
        "from service import create_app; import pathlib\n"
        f"body = {request!r}\n"
        "answer = create_app().test_client().post('/v1/exercises', json=body).data\n"
        f"pathlib.Path({str(out)!r}).write_bytes(answer)"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, check=True)
    response = client.post("/v1/exercises", json=request)
    assert response.status_code == 200
    first = response.data
    assert out.read_bytes() == first == client.post("/v1/exercises", json=request).data


def test_different_seeds_give_different_layered_problems(client):
    assert exercise(client, seed=1)["problem"] != exercise(client, seed=2)["problem"]


def test_dropout_is_generated_with_a_seed_never_a_mask_and_the_solution_holds_the_mask(client):
    answer = exercise(client, layers=KINDS["dropout"], batch_size=5)
    layer = answer["problem"]["layers"][1]
    assert set(layer) == {"type", "keep_prob", "seed", "activation"}
    assert layer["keep_prob"] == 0.7 and isinstance(layer["seed"], int)
    mask = np.asarray(answer["solution"]["layers"][1]["mask"])
    expected = np.random.default_rng(layer["seed"]).random((5, 5)) < 0.7
    np.testing.assert_array_equal(mask, expected)


def test_a_bias_free_dense_layer_has_no_biases_and_its_solution_no_db(client):
    answer = exercise(client, layers=KINDS["dense_without_bias"])
    assert [set(layer) for layer in answer["problem"]["layers"]] == [{"weights", "activation"}] * 2
    assert [set(layer) for layer in answer["solution"]["layers"]] == [{"a", "dW"}] * 2


@pytest.mark.parametrize(
    ("spec", "sent", "answered"),
    [
        ({"type": "batchnorm"}, {"mode": "train", "variance": "biased"}, set()),
        (
            {"type": "batchnorm", "variance": "unbiased", "running": True},
            {"mode": "train", "variance": "unbiased", "momentum": 0.9},
            {"running_mean", "running_var"},
        ),
        (
            {"type": "batchnorm", "mode": "eval"},
            {"mode": "eval", "variance": "biased"},
            set(),
        ),
    ],
)
def test_batchnorm_is_generated_in_the_mode_and_variance_asked(client, spec, sent, answered):
    answer = exercise(client, layers=[spec, {"units": 3, "activation": "softmax"}])
    layer = answer["problem"]["layers"][0]
    assert {k: layer[k] for k in sent} == sent
    running = {"running_mean", "running_var"} <= set(layer)
    assert running == (spec.get("mode") == "eval" or spec.get("running", False))
    if running:
        assert np.min(layer["running_var"]) >= 0.6  # never a vanishing variance
    assert set(answer["solution"]["layers"][0]) == {"a", "dgamma", "dbeta"} | answered


@pytest.mark.parametrize("seed", range(6))
def test_every_feature_reaching_a_train_batchnorm_is_spread_over_the_batch(client, seed):
    """64 relu units over a batch of 3: unconditioned, about one in six would be dead on
    every sample, and the batchnorm would divide them by sqrt(eps), 316 times."""
    layers = [
        {"units": 64, "activation": "relu"},
        {"type": "batchnorm"},
        {"units": 3, "activation": "softmax"},
    ]
    answer = exercise(client, seed=seed, layers=layers, batch_size=3, decimals=2)
    relu_out = np.asarray(answer["solution"]["layers"][0]["a"])
    assert np.min(relu_out.var(axis=0)) >= MIN_VARIANCE


@pytest.mark.parametrize("seed", range(6))
def test_every_sample_reaching_a_layernorm_is_spread_over_its_features(client, seed):
    layers = [
        {"units": 3, "activation": "relu"},
        {"type": "layernorm"},
        {"units": 2, "activation": "identity"},
    ]
    answer = exercise(client, seed=seed, layers=layers, loss="mse", targets="dense", batch_size=32)
    relu_out = np.asarray(answer["solution"]["layers"][0]["a"])
    assert np.min(relu_out.var(axis=1)) >= MIN_VARIANCE


def image_activations(answer: dict, i: int, layout: str) -> np.ndarray:
    """Layer i's answered output as canonical (N, C, H, W) images."""
    a = np.asarray(answer["solution"]["layers"][i]["a"])
    return a if layout == "NCHW" else a.transpose(0, 3, 1, 2)


def group_variances(images: np.ndarray, groups: int) -> np.ndarray:
    """(N, G): each sample's groups' variances, as a groupnorm sees them."""
    return images.reshape(images.shape[0], groups, -1).var(axis=2)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_every_channel_reaching_a_train_spatial_batchnorm_is_spread(client, layout, seed):
    """32 relu 1x1 filters over 2 images of 2x2: unconditioned, some channel is dead on every
    pixel of both images in each of these seeds; its filter is redrawn."""
    layers = [
        {"type": "conv2d", "filters": 32, "size": 1, "activation": "relu"},
        {"type": "batchnorm"},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ]
    request = image_body(layers, layout, seed=seed, image_shape=[2, 2, 2], batch_size=2)
    answer = client.post("/v1/exercises", json=request | {"decimals": 2}).get_json()
    channels = image_activations(answer, 0, layout).var(axis=(0, 2, 3))
    assert np.min(channels) >= MIN_VARIANCE


@pytest.mark.parametrize("seed", range(6))
def test_every_input_channel_reaching_a_train_spatial_batchnorm_is_spread(client, seed):
    """One image of 1x2 pixels rounded to whole numbers: a channel's two pixels are often
    equal (unconditioned, in 3 of these 6 seeds); that channel is redrawn."""
    layers = [{"type": "batchnorm"}, {"type": "flatten"}, {"units": 3, "activation": "softmax"}]
    request = image_body(layers, "NCHW", seed=seed, image_shape=[4, 1, 2], batch_size=1)
    answer = client.post("/v1/exercises", json=request | {"decimals": 0}).get_json()
    inputs = np.asarray(answer["problem"]["inputs"])
    assert np.min(inputs.var(axis=(0, 2, 3))) >= MIN_VARIANCE


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_every_group_reaching_a_groupnorm_is_spread(client, layout, seed):
    """Instance norm (G = C) of 8 relu 3x3 filters over images of 3x3: unconditioned, a
    channel is dead over a whole image in most seeds; its filter (or the image) is redrawn."""
    layers = [
        {"type": "conv2d", "filters": 8, "size": 3, "pad": 1, "activation": "relu"},
        {"type": "groupnorm", "groups": 8},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ]
    request = image_body(layers, layout, seed=seed, image_shape=[2, 3, 3], decimals=2)
    answer = client.post("/v1/exercises", json=request | {"batch_size": 4}).get_json()
    assert np.min(group_variances(image_activations(answer, 0, layout), 8)) >= MIN_VARIANCE


@pytest.mark.parametrize("seed", range(6))
def test_every_input_group_reaching_a_groupnorm_is_spread(client, seed):
    """Groups of 2 numbers rounded to 1 decimal: unconditioned, a sample of seed 1 has a
    group of two equal numbers; that sample is redrawn."""
    layers = [
        {"type": "groupnorm", "groups": 2},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ]
    request = image_body(layers, "NCHW", seed=seed, image_shape=[2, 1, 2], batch_size=4)
    answer = client.post("/v1/exercises", json=request | {"decimals": 1}).get_json()
    inputs = np.asarray(answer["problem"]["inputs"])
    assert np.min(group_variances(inputs, 2)) >= MIN_VARIANCE


@pytest.mark.parametrize("targets", ["labels", "dense"])
def test_class_targets_cover_every_class(client, targets):
    layers = [{"units": 5, "activation": "softmax"}]
    answer = exercise(client, layers=layers, targets=targets, batch_size=12, convention="columns")
    sent = np.asarray(answer["problem"]["targets"])
    labels = sent if targets == "labels" else sent.argmax(axis=0)  # columns: (n_out, batch)
    assert sent.shape == ((12,) if targets == "labels" else (5, 12))
    assert sorted(np.bincount(labels.astype(int))) == [2, 2, 2, 3, 3]


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"loss": "mse"}, "targets", "class labels need a loss over classes (cross_entropy, svm)"),
        (
            {"targets": "dense", "loss": "bce"},
            "loss",
            "the generated problem would be refused by /v1/gradients: bce needs a sigmoid output",
        ),
        (
            {
                "batch_size": 1,
                "layers": [
                    {"type": "batchnorm", "variance": "unbiased"},
                    {"units": 3, "activation": "softmax"},
                ],
            },
            "layers.0.variance",
            'the generated problem would be refused by /v1/gradients: "unbiased" divides',
        ),
        (
            {
                "batch_size": 1,
                "layers": [{"type": "batchnorm"}, {"units": 3, "activation": "softmax"}],
            },
            "batch_size",
            "layer 0 is a batchnorm in train mode: over a batch of 1 its batch variance is 0",
        ),
        (
            {
                "layers": [{"units": 1, "activation": "tanh"}, {"type": "layernorm"}],
                "loss": "mse",
                "targets": "dense",
            },
            "layers.1",
            "a layernorm over 1 feature normalises every value to 0",
        ),
        ({"layer_sizes": [3, 2]}, "layer_sizes", "layer_sizes was sent with layers"),
        ({"activations": ["tanh"]}, "activations", "activations was sent with layers"),
        ({"n_in": None}, "n_in", "missing: the number of input features"),
        ({"n_in": 0}, "n_in", "Must be greater than or equal to 1"),
        ({"layers": []}, "layers", "at least one layer is needed"),
        ({"layers": [{"type": "lstm"}]}, "layers.0.type", "expected one of dense, batchnorm"),
        ({"layers": [{"type": "batchnrom"}]}, "layers.0.type", "did you mean"),
        ({"layers": [{"units": 3}]}, "layers.0.activation", "Missing data"),
        (
            {"layers": [{"units": 3, "activation": "relu", "bias": 1}]},
            "layers.0.bias",
            "true or false",
        ),
        (
            {"layers": [{"units": 3, "activation": "relu", "bais": False}]},
            "layers.0.bais",
            "unknown field",
        ),
        (
            {"layers": [{"type": "dropout", "keep_prob": 0}]},
            "layers.0.keep_prob",
            "must be in (0, 1]",
        ),
        (
            {"layers": [{"type": "dropout", "keep_prob": 0.5, "seed": 3}]},
            "layers.0.seed",
            "unknown field",
        ),
        (
            {"layers": [{"type": "batchnorm", "momentum": 2}]},
            "layers.0.momentum",
            "must be in [0, 1]",
        ),
        ({"layers": [{"type": "batchnorm", "mode": "test"}]}, "layers.0.mode", "unknown mode"),
        ({"layers": [{"type": "layernorm", "eps": 0}]}, "layers.0.eps", "greater than 0"),
        ({"layers": ["dense"]}, "layers.0", "expected a JSON object"),
    ],
)
def test_impossible_layered_requests_are_422_naming_the_field(client, changes, field, says):
    response = client.post("/v1/exercises", json=body(KINDS["batchnorm_train_biased"]) | changes)
    assert response.status_code == 422, response.get_json()
    assert response.content_type == "application/problem+json"
    errors = response.get_json()["errors"]
    assert list(errors) == [field], errors
    assert says.lower() in errors[field][0].lower()


def test_targets_and_n_in_belong_to_layers_not_to_layer_sizes(client):
    dense_only = {"seed": 1, "layer_sizes": [2, 3], "activations": ["softmax"], "loss": "svm"}
    for extra, field in (({"targets": "labels"}, "targets"), ({"n_in": 2}, "n_in")):
        response = client.post("/v1/exercises", json=dense_only | extra)
        assert response.status_code == 422
        assert response.get_json()["errors"][field][0].startswith(f"{field} goes with layers")


# -- images: conv2d, the pools, flatten, in both layouts ------------------------------------

#: one image network per image kind (and variant), over 2 channels of 6x6
IMAGE_KINDS = {
    "conv2d_pad_relu": [
        {"type": "conv2d", "filters": 3, "size": 3, "pad": 1, "activation": "relu"},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "conv2d_stride_without_bias": [
        {"type": "conv2d", "filters": 2, "size": [2, 3], "stride": [2, 3], "bias": False},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "maxpool2d_ties_all": [
        {"type": "conv2d", "filters": 2, "size": 3, "activation": "tanh"},
        {"type": "maxpool2d", "pool": 2, "ties": "all"},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "avgpool2d_stride": [
        {"type": "avgpool2d", "pool": 3, "stride": 1},
        {"type": "conv2d", "filters": 2, "size": 2, "stride": 2},
        {"type": "flatten", "activation": "relu"},
        {"units": 4, "activation": "relu"},
        {"type": "layernorm"},
        {"units": 3, "activation": "softmax"},
    ],
    "batchnorm_spatial_train_running": [
        {"type": "conv2d", "filters": 4, "size": 3, "pad": 1, "activation": "relu"},
        {"type": "batchnorm", "running": True, "momentum": 0.8, "activation": "relu"},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "batchnorm_spatial_unbiased_on_the_inputs": [
        {"type": "batchnorm", "variance": "unbiased", "activation": "tanh"},
        {"type": "avgpool2d", "pool": 2},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "batchnorm_spatial_eval": [
        {"type": "conv2d", "filters": 3, "size": 3, "activation": "relu"},
        {"type": "batchnorm", "mode": "eval", "eps": 0.001},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "groupnorm": [
        {"type": "conv2d", "filters": 4, "size": 3, "pad": 1, "activation": "relu"},
        {"type": "groupnorm", "groups": 2, "activation": "relu"},
        {"type": "maxpool2d", "pool": 2},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "groupnorm_instance_on_the_inputs": [
        {"type": "groupnorm", "groups": 2, "eps": 0.01},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
    "dropout_on_images": [
        {"type": "conv2d", "filters": 3, "size": 3, "pad": 1, "activation": "relu"},
        {"type": "dropout", "keep_prob": 0.7},
        {"type": "batchnorm"},
        {"type": "groupnorm", "groups": 3},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ],
}


def image_body(layers, layout: str, **changes) -> dict:
    return body(layers, n_in=None, image_shape=[2, 6, 6], layout=layout) | changes


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_every_image_kind_gives_a_problem_whose_solution_is_the_gradients_answer_and_torchs(
    client, kind, layout, convention
):
    request = image_body(IMAGE_KINDS[kind], layout, convention=convention, decimals=3)
    response = client.post("/v1/exercises", json=request)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["problem"]["layout"] == layout
    assert_is_the_gradients_answer_and_torchs(client, answer)


@pytest.mark.parametrize(
    ("layout", "inputs", "weights"),
    [("NCHW", (5, 2, 6, 6), (3, 2, 3, 3)), ("NHWC", (5, 6, 6, 2), (3, 3, 2, 3))],
)
def test_images_and_filters_are_laid_out_in_the_layout_asked(client, layout, inputs, weights):
    request = image_body(IMAGE_KINDS["conv2d_pad_relu"], layout, batch_size=5)
    problem = client.post("/v1/exercises", json=request).get_json()["problem"]
    assert np.shape(problem["inputs"]) == inputs
    assert np.shape(problem["layers"][0]["weights"]) == weights
    assert problem["layers"][0]["stride"] == [1, 1] and problem["layers"][0]["pad"] == [1, 1]


def test_the_same_image_exercise_is_drawn_alike_in_both_layouts(client):
    """The draw is canonical: NHWC's problem is NCHW's, transposed."""
    answers = [
        client.post(
            "/v1/exercises", json=image_body(IMAGE_KINDS["maxpool2d_ties_all"], layout)
        ).get_json()["problem"]
        for layout in ("NCHW", "NHWC")
    ]
    nchw, nhwc = answers
    np.testing.assert_array_equal(
        np.transpose(nchw["inputs"], (0, 2, 3, 1)), np.asarray(nhwc["inputs"])
    )
    np.testing.assert_array_equal(
        np.transpose(nchw["layers"][0]["weights"], (2, 3, 1, 0)), nhwc["layers"][0]["weights"]
    )


@pytest.mark.parametrize(
    ("layers", "field", "says"),
    [
        (
            [{"type": "conv2d", "filters": 2, "size": 3, "stride": 2}, {"type": "flatten"}],
            "layers.0",
            "(6 + 2*0 - 3) / 2 + 1 = 2.5 is not whole",
        ),
        (
            [{"type": "conv2d", "filters": 2, "size": 7}, {"type": "flatten"}],
            "layers.0.size",
            "the filters are 7 high/wide on the height axis",
        ),
        ([{"type": "maxpool2d", "pool": 7}, {"type": "flatten"}], "layers.0.pool", "larger than"),
        ([{"units": 3, "activation": "softmax"}], "layers.0.type", 'put a {"type": "flatten"}'),
        (
            [{"type": "flatten"}, {"type": "conv2d", "filters": 1, "size": 1}],
            "layers.1.type",
            "takes 4-d images",
        ),
        ([{"type": "conv2d", "filters": 1, "size": 1}], "loss", "a loss takes 2-d scores"),
        ([{"type": "layernorm"}], "layers.0.type", "takes 2-d data"),
        (
            [{"type": "groupnorm", "groups": 3}, {"type": "flatten"}],
            "layers.0.groups",
            "refused by /v1/gradients: got 3, which does not divide the 2 channel(s)",
        ),
        ([{"type": "groupnorm"}, {"type": "flatten"}], "layers.0.groups", "missing: the number"),
        (
            [{"type": "groupnorm", "groups": 0}, {"type": "flatten"}],
            "layers.0.groups",
            "must be at least 1",
        ),
        (
            [{"type": "groupnorm", "groups": 1, "gamma": [1, 1]}, {"type": "flatten"}],
            "layers.0.gamma",
            "unknown field",
        ),
        (
            [{"type": "groupnorm", "groups": 2, "eps": -1}, {"type": "flatten"}],
            "layers.0.eps",
            "greater than 0",
        ),
        (
            [
                {"type": "conv2d", "filters": 2, "size": 6},
                {"type": "groupnorm", "groups": 2},
                {"type": "flatten"},
            ],
            "layers.1.groups",
            "2 group(s) over 2 channel(s) of 1x1: each group holds 1 number",
        ),
        (
            [{"type": "conv2d", "filters": 2, "size": 0}, {"type": "flatten"}],
            "layers.0.size",
            "at least 1",
        ),
        ([{"type": "conv2d", "size": 2}, {"type": "flatten"}], "layers.0.filters", "missing"),
    ],
)
def test_impossible_image_exercises_are_422_naming_the_field(client, layers, field, says):
    if layers[-1].get("type") == "flatten":
        layers = [*layers, {"units": 3, "activation": "softmax"}]
    response = client.post("/v1/exercises", json=image_body(layers, "NCHW"))
    assert response.status_code == 422, response.get_json()
    errors = response.get_json()["errors"]
    assert list(errors) == [field], errors
    assert says.lower() in errors[field][0].lower()


def test_groupnorm_on_rows_is_422_as_gradients_refuses_it(client):
    request = body([{"type": "groupnorm", "groups": 1}, {"units": 3, "activation": "softmax"}])
    response = client.post("/v1/exercises", json=request)
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == ["layers.0.type"]
    assert errors["layers.0.type"][0].startswith(
        "the generated problem would be refused by /v1/gradients: layer 0 is a groupnorm "
        "layer, which takes 4-D images"
    )


def test_a_spatial_batchnorm_over_one_image_is_answered_over_one_pixel_refused(client):
    """Its statistics run over batch x height x width numbers: one 6x6 image is 36 of them."""
    layers = [{"type": "batchnorm"}, {"type": "flatten"}, {"units": 3, "activation": "softmax"}]
    answered = client.post("/v1/exercises", json=image_body(layers, "NHWC", batch_size=1))
    assert answered.status_code == 200, answered.get_json()
    assert_is_the_gradients_answer_and_torchs(client, answered.get_json())
    one_pixel = image_body(layers, "NCHW", batch_size=1, image_shape=[2, 1, 1])
    refused = client.post("/v1/exercises", json=one_pixel)
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {
        "batch_size": [
            "layer 0 is a batchnorm in train mode: over a batch of 1 image of 1x1 its batch "
            "variance is 0 and it normalises every value to 0. Ask for batch_size 2 or more, or "
            'mode "eval".'
        ]
    }


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_norms_on_images_are_generated_with_one_value_per_channel(client, layout, convention):
    """gamma, beta and the running statistics (C,) in every convention and layout, as a
    convolution's biases (gradients accepts the layout's (1, C, 1, 1) too: not drawn)."""
    layers = [
        {"type": "conv2d", "filters": 4, "size": 3, "pad": 1},
        {"type": "batchnorm", "mode": "eval"},
        {"type": "groupnorm", "groups": 2, "eps": 0.001},
        {"type": "dropout", "keep_prob": 0.5},
        {"type": "flatten"},
        {"units": 3, "activation": "softmax"},
    ]
    request = image_body(layers, layout, convention=convention, batch_size=5)
    answer = client.post("/v1/exercises", json=request).get_json()
    batchnorm, groupnorm, dropout = answer["problem"]["layers"][1:4]
    assert {name: np.shape(batchnorm[name]) for name in ("gamma", "beta", *RUNNING)} == {
        name: (4,) for name in ("gamma", "beta", *RUNNING)
    }
    assert groupnorm == {
        "type": "groupnorm",
        "gamma": groupnorm["gamma"],
        "beta": groupnorm["beta"],
        "groups": 2,
        "eps": 0.001,
        "activation": "identity",
    }
    assert np.shape(groupnorm["gamma"]) == np.shape(groupnorm["beta"]) == (4,)
    assert set(dropout) == {"type", "keep_prob", "seed", "activation"}
    mask = np.asarray(answer["solution"]["layers"][3]["mask"])  # the images' shape, in the layout
    shape = (5, 4, 6, 6) if layout == "NCHW" else (5, 6, 6, 4)
    np.testing.assert_array_equal(mask, np.random.default_rng(dropout["seed"]).random(shape) < 0.5)
    assert_is_the_gradients_answer_and_torchs(client, answer)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_in": 3}, "image_shape"),  # both
        ({"image_shape": [2, 6]}, "image_shape"),
        ({"image_shape": [2, 0, 6]}, "image_shape.1"),
        ({"layout": "NWHC"}, "layout"),
    ],
)
def test_a_wrong_image_shape_or_layout_is_422_naming_it(client, changes, field):
    request = image_body(IMAGE_KINDS["conv2d_pad_relu"], "NCHW") | changes
    response = client.post("/v1/exercises", json=request)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


# -- pricing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_body",
    [body(KINDS[kind], targets=targets) for kind in KINDS for targets in ("labels", "dense")]
    + [
        image_body(IMAGE_KINDS[kind], layout) for kind in IMAGE_KINDS for layout in ("NCHW", "NHWC")
    ],
)
def test_the_price_is_read_from_the_spec_as_it_would_be_from_the_generated_problem(request_body):
    """The cost model sees before drawing exactly what it would see of the problem drawn:
    every kind's parameters, held running statistics, drawn masks, a convolution's and a
    pool's sizes, and the targets' form."""
    from schemas.exercises import ExerciseRequestSchema

    request = ExerciseRequestSchema().load(request_body | {"batch_size": 5})
    problem = generate_layered(request.spec)
    assert network_shape(request.spec) == NetworkShape.of(problem)


@pytest.fixture
def never_generated(monkeypatch):
    def generate(*args, **kwargs):
        raise AssertionError("the exercise was generated before its limits were checked")

    monkeypatch.setattr(autograder, "generate_layered", generate)


def test_a_layered_exercise_too_large_to_hold_is_refused_by_how_much_before_it_is_drawn(
    client, never_generated
):
    layers = [
        {"units": 1024, "activation": "relu", "bias": False},
        {"type": "batchnorm", "running": True},
        {"type": "dropout", "keep_prob": 0.5},
        {"type": "layernorm"},
        {"units": 1024, "activation": "softmax"},
    ]
    response = client.post("/v1/exercises", json=body(layers, n_in=1024, batch_size=1024))
    assert response.status_code == 422
    (message,) = response.get_json()["errors"]["_request"]
    assert message.startswith("the computation would hold about ")
    assert "x this service's limit of 256 MiB (GRADIENT_MAX_REQUEST_BYTES)" in message
    assert message.endswith("ask for a smaller batch_size, or fewer and narrower layers.")


def test_every_layered_exercise_is_priced_above_its_dense_only_twin(client):
    """The generator's forward pass and the load through /v1/gradients' schema are priced."""
    from schemas.exercises import ExerciseRequestSchema
    from service.core.request_costs import exercise_cost

    request = ExerciseRequestSchema().load(
        body(
            [{"units": 8, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
            targets="dense",
        )
    )
    net = network_shape(request.spec)
    plain, layered = (
        exercise_cost(net, "cross_entropy"),
        exercise_cost(net, "cross_entropy", 33),
    )
    assert layered.bytes > plain.bytes and layered.flops > plain.flops
    assert any("loaded by /v1/gradients' schema" in part.what for part in layered.parts)


@pytest.mark.parametrize(
    ("n_in", "layers", "batch"),
    [
        (
            256,
            [
                {"units": 256, "activation": "relu", "bias": False},
                {"type": "batchnorm", "running": True},
                {"type": "dropout", "keep_prob": 0.5},
                {"type": "layernorm", "activation": "tanh"},
                {"units": 64, "activation": "softmax"},
            ],
            1024,
        ),
        (
            1024,
            [{"type": "batchnorm", "mode": "eval"}, {"units": 1024, "activation": "softmax"}],
            32,
        ),
        (
            2,
            [
                {"units": 2, "activation": "relu"},
                {"type": "layernorm"},
                {"units": 8, "activation": "softmax"},
            ],
            1024,
        ),
    ],
    ids=["every_kind", "wide", "narrow_layernorm"],
)
def test_a_layered_exercise_holds_less_than_its_estimate(n_in, layers, batch):
    """tracemalloc from the cost check to the written answer, within the priced bytes."""
    assert_held_within_estimate(body(layers, n_in=n_in, batch_size=batch))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("norms", [False, True], ids=["conv_pool", "with_norms_and_dropout"])
def test_an_image_exercise_holds_less_than_its_estimate(layout, norms):
    layers = [
        {"type": "conv2d", "filters": 16, "size": 3, "pad": 1, "activation": "relu"},
        {"type": "maxpool2d", "pool": 2},
        {"type": "flatten"},
        {"units": 10, "activation": "softmax"},
    ]
    if norms:  # every image kind, conditioned (the generator's passes are priced)
        layers[1:1] = [
            {"type": "batchnorm", "running": True, "activation": "relu"},
            {"type": "dropout", "keep_prob": 0.8},
            {"type": "groupnorm", "groups": 4, "activation": "relu"},
        ]
    request = body(layers, n_in=None, image_shape=[3, 32, 32], layout=layout, batch_size=16)
    assert_held_within_estimate(request)


def assert_held_within_estimate(request: dict) -> None:
    from flask.testing import FlaskClient

    from service import create_app
    from tests.memory_cases import Case, traced

    app = create_app({"RATELIMIT_ENABLED": False})
    app.test_client_class = FlaskClient  # the contract gate's parsing is not the service's
    measured = traced(app.test_client(), Case("layered", "/v1/exercises", orjson.dumps(request)))
    assert measured.status == 200
    assert measured.view <= measured.estimate.bytes, (
        f"{measured.view / 2**20:.1f} MiB held, {measured.estimate.bytes / 2**20:.1f} MiB estimated"
    )


def random_spec(rng: np.random.Generator) -> dict:
    """A random layered request, images or rows, often impossible on purpose."""
    activations = ["identity", "relu", "tanh", "sigmoid", "softmax", "leaky_relu"]
    layers: list[dict] = []
    images = bool(rng.integers(2))
    if images:
        for _ in range(rng.integers(0, 3)):
            kind = rng.choice(["conv2d", "maxpool2d", "avgpool2d"])
            if kind == "conv2d":
                layer = {
                    "type": "conv2d",
                    "filters": int(rng.integers(1, 4)),
                    "size": int(rng.integers(1, 4)),
                    "stride": int(rng.integers(1, 3)),
                    "pad": int(rng.integers(0, 2)),
                    "bias": bool(rng.integers(2)),
                    "activation": str(rng.choice(activations[:4])),
                }
            else:
                layer = {"type": str(kind), "pool": int(rng.integers(1, 4))}
            layers.append(layer)
        for _ in range(rng.integers(0, 3)):  # the kinds that take images and rows, groupnorm
            kind = rng.choice(["batchnorm", "groupnorm", "dropout"])
            if kind == "batchnorm":
                layer = {
                    "type": "batchnorm",
                    "mode": str(rng.choice(["train", "eval"])),
                    "variance": str(rng.choice(["biased", "unbiased"])),
                    "running": bool(rng.integers(2)),
                }
            elif kind == "groupnorm":  # G often does not divide C (refused)
                layer = {"type": "groupnorm", "groups": int(rng.integers(1, 4))}
            else:
                layer = {"type": "dropout", "keep_prob": float(rng.choice([0.5, 0.8, 1.0]))}
            layer["activation"] = str(rng.choice(activations[:4]))
            layers.append(layer)
        layers.append({"type": "flatten"})
    for _ in range(rng.integers(0, 4)):
        kind = rng.choice(["dense", "batchnorm", "layernorm", "dropout"])
        if kind == "dense":
            layer = {"units": int(rng.integers(1, 6)), "bias": bool(rng.integers(2))}
            layer["activation"] = str(rng.choice(activations))
        elif kind == "batchnorm":
            layer = {
                "type": "batchnorm",
                "mode": str(rng.choice(["train", "eval"])),
                "variance": str(rng.choice(["biased", "unbiased"])),
                "running": bool(rng.integers(2)),
            }
        elif kind == "layernorm":
            layer = {"type": "layernorm"}
        else:
            layer = {"type": "dropout", "keep_prob": float(rng.choice([0.5, 0.8, 1.0]))}
        layers.append(layer)
    loss = str(rng.choice(["mse", "half_mse", "bce", "cross_entropy", "svm", "hinge"]))
    last = {"bce": "sigmoid", "cross_entropy": "softmax"}.get(loss, str(rng.choice(activations)))
    layers.append({"units": int(rng.integers(1, 5)), "activation": last})
    request = {
        "seed": int(rng.integers(0, 2**40)),
        "layers": layers,
        "loss": loss,
        "targets": str(rng.choice(["dense", "labels"])),
        "batch_size": int(rng.integers(1, 6)),
        "convention": str(rng.choice(CONVENTIONS)),
        "reduction": str(rng.choice(["mean", "sum"])),
        "dz_scale": str(rng.choice(["reduced", "per_sample"])),
    }
    if rng.integers(2):
        request["decimals"] = int(rng.integers(0, 4))
    if images:
        shape = [int(rng.integers(1, 3)), int(rng.integers(2, 7)), int(rng.integers(2, 7))]
        return request | {"image_shape": shape, "layout": str(rng.choice(["NCHW", "NHWC"]))}
    return request | {"n_in": int(rng.integers(1, 5))}


def test_random_layered_requests_answer_a_solution_or_a_422_never_a_500(client):
    """200 or 422 for any mix of kinds; every 200 is /v1/gradients' own answer, and every 422
    names a field of the request."""
    rng = np.random.default_rng(13)
    answered = refused = 0
    for _ in range(150):
        request = random_spec(rng)
        response = client.post("/v1/exercises", json=request)
        assert response.status_code in (200, 422), (request, response.get_json())
        if response.status_code == 422:
            refused += 1
            (first, *_) = response.get_json()["errors"]
            assert first.split(".")[0] in request or first == "batch_size", (request, first)
            continue
        answered += 1
        answer = response.get_json()
        gradients = client.post("/v1/gradients", json=answer["problem"])
        assert gradients.get_json() == answer["solution"], request
    assert answered > 30 and refused > 30  # both sides were exercised


#: The README's example (notes/exercises.md): a bias-free relu layer, a batchnorm, CS231n's
#: svm over class labels.  Its answer is printed there in full; this pins its bytes.
README_EXAMPLE = {
    "seed": 7,
    "n_in": 2,
    "batch_size": 3,
    "decimals": 1,
    "layers": [
        {"units": 2, "activation": "relu", "bias": False},
        {"type": "batchnorm"},
        {"units": 3, "activation": "identity"},
    ],
    "loss": "svm",
    "targets": "labels",
}


def test_the_readme_example_answers_the_documented_bytes(client):
    response = client.post("/v1/exercises", json=README_EXAMPLE)
    assert hashlib.sha256(response.data).hexdigest() == (
        "0bb575db68e42c7383bec4657ef338f56b161dc0a80b11396c82d15ea7a212ae"
    )
    answer = response.get_json()
    assert answer["problem"]["targets"] == [2.0, 0.0, 1.0]
    assert answer["solution"]["loss"] == 3.0427945129286447
    assert_is_the_gradients_answer_and_torchs(client, answer)
