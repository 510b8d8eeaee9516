"""Class labels for cross_entropy and svm, CS231n's multiclass SVM and the binary hinge loss.

Every number is PyTorch float64 autograd's within 1e-9 (tests/torch_reference.py, fed the
request as sent), in every convention, for both reductions; CS231n's own svm_loss_vectorized
and softmax_loss_vectorized, written out in NumPy below, agree with the service too.  Bad
labels and targets are 422s at the path ``targets`` naming the first bad index and value.
"""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.core import Problem, dense_layer
from service.core.cost import NetworkShape
from tests.memory_cases import assert_every_pass_within_estimate
from tests.problems import CONVENTIONS, post, random_request
from tests.torch_reference import assert_close, assert_matches_torch, reference

ALL = ["z", "a", "dz", "dx"]
OUTPUT = {"cross_entropy": "softmax", "svm": "identity", "hinge": "identity"}


def network(seed: int, convention: str, loss: str, **options) -> tuple[dict, int, int]:
    """A random 2-dense-layer request for ``loss`` (no targets yet), its batch and classes."""
    request = random_request(seed, convention=convention, loss="cross_entropy", n_layers=2)
    request |= {"loss": loss, "include": ALL, **options}
    request["layers"][-1]["activation"] = OUTPUT[loss]
    batch = np.shape(request.pop("targets"))[1 if convention == "columns" else 0]
    return request, batch, classes_of(request)


def classes_of(request: dict) -> int:
    """The last layer's units, from its weights in the request's convention."""
    shape = np.shape(request["layers"][-1]["weights"])
    return shape[1] if request.get("convention", "numpy") == "numpy" else shape[0]


def with_labels(seed: int, convention: str, loss: str, form: str = "flat", **options) -> dict:
    """Integer class labels, flat (batch,) or (columns only) one row (1, batch)."""
    request, batch, classes = network(seed, convention, loss, **options)
    labels = np.random.default_rng(seed + 1000).integers(classes, size=batch).tolist()
    return request | {"targets": labels if form == "flat" else [labels]}


def as_one_hot(request: dict, classes: int) -> dict:
    """The same request with its flat labels as one-hot rows in the client's layout."""
    one_hot = np.eye(classes)[request["targets"]]
    columns = request.get("convention") == "columns"
    return request | {"targets": (one_hot.T if columns else one_hot).tolist()}


def field_error(client, request: dict, *fragments: str) -> str:
    response = client.post("/v1/gradients", json=request)
    assert response.status_code == 422, response.get_data(as_text=True)
    errors = response.get_json()["errors"]
    assert list(errors) == ["targets"], errors
    message = " ".join(errors["targets"])
    for fragment in fragments:
        assert fragment in message, message
    return message


COMBOS = list(itertools.product(CONVENTIONS, ("mean", "sum"), range(3)))


# -- class labels and the svm loss match torch -----------------------------------------------


@pytest.mark.parametrize("loss", ["cross_entropy", "svm"])
@pytest.mark.parametrize(("convention", "reduction", "seed"), COMBOS)
def test_class_labels_match_torch_in_every_convention(client, loss, convention, reduction, seed):
    request = with_labels(seed, convention, loss, reduction=reduction)
    assert np.ndim(request["targets"]) == 1
    assert_matches_torch(post(client, request), request)


@pytest.mark.parametrize("loss", ["cross_entropy", "svm"])
@pytest.mark.parametrize(("convention", "reduction", "seed"), COMBOS)
def test_one_hot_targets_give_exactly_the_labels_answer(client, loss, convention, reduction, seed):
    request = with_labels(seed, convention, loss, reduction=reduction)
    one_hot = as_one_hot(request, classes_of(request))
    answer = post(client, one_hot)
    assert_matches_torch(answer, one_hot)
    labels_answer = post(client, request)
    assert answer["loss"] == pytest.approx(labels_answer["loss"], rel=1e-12)
    for got, want in zip(answer["layers"], labels_answer["layers"]):
        np.testing.assert_allclose(got["dW"], want["dW"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", ["cross_entropy", "svm"])
@pytest.mark.parametrize("seed", range(3))
def test_a_row_of_labels_in_columns_reads_as_labels_when_the_output_has_several_units(
    client, loss, seed
):
    request = with_labels(seed, "columns", loss, form="row")
    assert np.shape(request["targets"])[0] == 1 and classes_of(request) > 1
    answer = post(client, request)
    assert_matches_torch(answer, request)
    flat = post(client, request | {"targets": request["targets"][0]})
    assert answer == flat


@pytest.mark.parametrize("l2_style", ["half", "full"])
@pytest.mark.parametrize("loss", ["cross_entropy", "svm"])
def test_labels_with_l2_in_both_styles_match_torch(client, loss, l2_style):
    request = with_labels(5, "torch", loss, l2=0.1, l2_style=l2_style, learning_rate=0.5)
    answer = post(client, request)
    assert_matches_torch(answer, request)
    expected = reference(request)
    for sent, grads, updated in zip(
        request["layers"], expected["layers"], answer["updated_layers"]
    ):
        assert_close(updated["weights"], np.array(sent["weights"]) - 0.5 * grads["dW"], "W")


@pytest.mark.parametrize("loss", ["cross_entropy", "svm"])
def test_labels_in_the_binary_form_and_the_gradient_check_work_too(client, loss):
    request = with_labels(8, "numpy", loss) | {"gradient_check": True}
    labels = np.array(request["targets"], dtype="<f8")
    binary = {"dtype": "float64", "shape": [labels.size], "data": base64.b64encode(labels).decode()}
    answer = post(client, request | {"targets": binary})
    assert answer["gradient_check"]["max_relative_error"] < 1e-6
    assert_matches_torch(answer, request)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "softmax"])
def test_svm_applies_to_the_output_after_its_activation(client, activation):
    request = with_labels(11, "numpy", "svm")
    request["layers"][-1]["activation"] = activation
    assert_matches_torch(post(client, request), request)


def test_svm_margin_of_exactly_zero_has_no_gradient_as_in_cs231n_and_torch(client):
    # scores [1, 2, 0] with label 0: class 1's margin is 2, class 2's exactly 0.
    request = {
        "inputs": [[1.0, 2.0, 0.0]],
        "targets": [0],
        "layers": [{"weights": np.eye(3).tolist(), "activation": "identity"}],
        "loss": "svm",
        "include": ["dz"],
    }
    answer = post(client, request)
    assert answer["loss"] == 2.0
    assert answer["layers"][0]["dz"] == [[-1.0, 1.0, 0.0]]
    # torch's own multiclass margin loss is the same sum divided by the classes
    scores = torch.tensor([[1.0, 2.0, 0.0]], requires_grad=True)
    (3 * F.multi_margin_loss(scores, torch.tensor([0]), reduction="sum")).backward()
    np.testing.assert_array_equal(answer["layers"][0]["dz"], scores.grad.numpy())
    assert_matches_torch(answer, request | {"include": ALL})


@pytest.mark.parametrize("seed", range(4))
def test_svm_matches_torchs_multi_margin_loss_times_the_classes(client, seed):
    request = with_labels(seed, "numpy", "svm", reduction="sum")
    answer = post(client, request)
    a = np.array(answer["layers"][-1]["a"])
    scores = torch.tensor(a, requires_grad=True)
    loss = a.shape[1] * F.multi_margin_loss(
        scores, torch.tensor(request["targets"]), reduction="sum"
    )
    loss.backward()
    assert_close(answer["loss"], loss.item(), "loss")
    assert_close(answer["layers"][-1]["dz"], scores.grad.numpy(), "dz")


# -- hinge -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("convention", "reduction", "seed"), COMBOS)
def test_hinge_matches_torch_in_every_convention(client, convention, reduction, seed):
    request, batch, n_out = network(seed, convention, "hinge", reduction=reduction)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(batch, n_out))
    request["targets"] = (signs.T if convention == "columns" else signs).tolist()
    assert_matches_torch(post(client, request), request)


def test_hinge_is_the_mean_over_every_element_like_mse(client):
    request = {
        "inputs": [[0.5], [-2.0]],
        "targets": [[1.0, -1.0], [1.0, 1.0]],
        "layers": [{"weights": [[1.0, 1.0]], "activation": "identity"}],
        "loss": "hinge",
        "include": ["dz"],
    }
    # margins 1 - y s: 0.5, 1.5, 3, 3 -> mean 2.0; dz = -y / 4 where the margin is positive
    answer = post(client, request)
    assert answer["loss"] == 2.0
    assert answer["layers"][0]["dz"] == [[-0.25, 0.25], [-0.25, -0.25]]


# -- CS231n's own functions --------------------------------------------------------------------


def svm_loss_vectorized(W, X, y, reg):
    """CS231n assignment 1, linear_svm.py, as students write it."""
    num_train = X.shape[0]
    scores = X.dot(W)
    correct_class_scores = scores[np.arange(num_train), y].reshape(-1, 1)
    margins = np.maximum(0, scores - correct_class_scores + 1)
    margins[np.arange(num_train), y] = 0
    loss = np.sum(margins) / num_train + reg * np.sum(W * W)
    binary = margins
    binary[margins > 0] = 1
    row_sum = np.sum(binary, axis=1)
    binary[np.arange(num_train), y] = -row_sum.T
    dW = X.T.dot(binary) / num_train + 2 * reg * W
    return loss, dW


def softmax_loss_vectorized(W, X, y, reg):
    """CS231n assignment 1, softmax.py, as students write it."""
    num_train = X.shape[0]
    scores = X.dot(W)
    scores -= np.max(scores, axis=1, keepdims=True)
    probs = np.exp(scores) / np.sum(np.exp(scores), axis=1, keepdims=True)
    loss = -np.sum(np.log(probs[np.arange(num_train), y])) / num_train + reg * np.sum(W * W)
    dscores = probs.copy()
    dscores[np.arange(num_train), y] -= 1
    dW = X.T.dot(dscores) / num_train + 2 * reg * W
    return loss, dW


@pytest.mark.parametrize(
    ("loss", "course_function", "activation"),
    [
        ("svm", svm_loss_vectorized, "identity"),
        ("cross_entropy", softmax_loss_vectorized, "softmax"),
    ],
    ids=["svm_loss_vectorized", "softmax_loss_vectorized"],
)
@pytest.mark.parametrize("seed", range(3))
def test_cs231n_linear_classifiers_loss_and_dW(client, loss, course_function, activation, seed):
    rng = np.random.default_rng(seed)
    N, D, C, reg = 7, 5, 4, 0.05
    X, W, y = rng.normal(size=(N, D)), 0.01 * rng.normal(size=(D, C)), rng.integers(C, size=N)
    request = {
        "inputs": X.tolist(),
        "targets": y.tolist(),
        "layers": [{"weights": W.tolist(), "activation": activation}],
        "loss": loss,
        "l2": reg,
        "l2_style": "full",
    }
    answer = post(client, request)
    expected_loss, expected_dW = course_function(W.copy(), X, y, reg)
    assert_close(answer["loss"], expected_loss, "loss")
    assert_close(answer["layers"][0]["dW"], expected_dW, "dW")


# -- errors: 422 at targets, never a 500 -------------------------------------------------------


def labelled(loss: str = "svm", targets=None, **options) -> dict:
    """A 2-3 numpy problem, batch 4: three classes."""
    return {
        "inputs": [[0.5, -1.0], [1.5, 2.0], [0.1, 0.2], [-0.3, 0.4]],
        "targets": [2, 0, 1, 1] if targets is None else targets,
        "layers": [
            {
                "weights": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]],
                "biases": [0.0, 0.1, -0.1],
                "activation": OUTPUT.get(loss, "identity"),
            }
        ],
        "loss": loss,
        **options,
    }


@pytest.mark.parametrize("loss", ["cross_entropy", "svm"])
@pytest.mark.parametrize(
    ("targets", "fragments"),
    [
        ([2, 0, 1, 3], ("targets[3] is 3", "out of range", "0..2", "3 unit(s)")),
        ([2, -1, 1, 1], ("targets[1] is -1", "out of range", "0..2")),
        ([2, 0, 1.5, 1], ("targets[2] is 1.5", "not a whole number", "0..2")),
        ([2, 0, 1], ("got 3 class label(s)", "expected 4", "one per sample")),
    ],
    ids=["above-the-classes", "negative", "fraction", "too-few"],
)
def test_a_bad_label_is_422_naming_its_index_value_and_the_classes(
    client, loss, targets, fragments
):
    message = field_error(client, labelled(loss, targets), *fragments)
    if "class label(s)" not in message:
        assert "class index" in message  # the fix


def test_a_bad_label_in_a_columns_row_is_named_by_its_index_there(client):
    request = {
        "convention": "columns",
        "inputs": [[0.5, 1.5, 0.1, -0.3], [-1.0, 2.0, 0.2, 0.4]],
        "targets": [[2, 0, 7, 1]],
        "layers": [{"weights": [[0.1, 0.4], [-0.2, 0.5], [0.3, -0.6]], "activation": "identity"}],
        "loss": "svm",
    }
    field_error(client, request, "targets[0][2] is 7", "0..2")


@pytest.mark.parametrize("loss", ["mse", "half_mse", "hinge"])
def test_labels_with_a_loss_that_takes_none_keep_the_broadcast_advice(client, loss):
    field_error(
        client,
        labelled(loss),
        "got a 1-D array of shape (4,), expected 2-D (4, 3)",
        "(batch,) versus (batch, 1) trap",
        "accepted only by cross_entropy and svm.",
    )


def test_a_label_column_for_a_label_loss_says_labels_are_sent_flat(client):
    field_error(client, labelled("svm", [[2], [0], [1], [1]]), "expected (4, 3)", "shape (4,)")


@pytest.mark.parametrize(
    ("targets", "fragments"),
    [
        ([[0, 0, 1], [0.5, 0.5, 0], [0, 1, 0], [1, 0, 0]], ("sample 1 (row 1)", "holds 0.5")),
        ([[0, 0, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0]], ("sample 2 (row 2)", "2 ones")),
        ([[0, 0, 1], [0, 1, 0], [0, 1, 0], [0, 0, 0]], ("sample 3 (row 3)", "0 ones")),
    ],
    ids=["probabilities", "two-classes", "no-class"],
)
def test_svm_dense_targets_must_be_one_hot(client, targets, fragments):
    field_error(client, labelled("svm", targets), "not one-hot", *fragments)


@pytest.mark.parametrize(
    ("convention", "targets", "where"),
    [
        ("numpy", [[1, -1, 1], [0.5, 1, 1], [1, 1, 1], [1, 1, 1]], "targets[1][0] is 0.5"),
        ("numpy", [[1, -1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 1]], "targets[2][2] is 0"),
        ("columns", [[1, 1, 1, 1], [-1, 1, 1, 2], [1, 1, 1, 1]], "targets[1][3] is 2"),
    ],
)
def test_hinge_targets_must_be_plus_or_minus_one(client, convention, targets, where):
    request = labelled("hinge", targets)
    if convention == "columns":
        request |= {
            "convention": "columns",
            "inputs": np.array(request["inputs"]).T.tolist(),
            "layers": [
                {
                    "weights": np.array(request["layers"][0]["weights"]).T.tolist(),
                    "activation": "identity",
                }
            ],
        }
    field_error(client, request, where, "-1 or +1", "2 * y - 1")


def test_a_neurons_hinge_target_must_be_plus_or_minus_one(client):
    body = {"x": [1.0, 2.0], "w": [0.5, -0.25], "b": 0.1, "activation": "identity", "loss": "hinge"}
    response = client.post("/v1/neuron", json=body | {"y": 0.0})
    assert response.status_code == 422 and "-1 or +1" in response.get_json()["errors"]["y"][0]
    answer = post(client, body | {"y": -1.0}, "/v1/neuron")
    # z = 0.1, margin 1 + z = 1.1: loss 1.1 and dL/db = dL/dz = 1
    assert answer["loss"] == pytest.approx(1.1) and answer["dL_db"] == 1.0


# -- the autograder with labels ----------------------------------------------------------------


def check(client, request: dict, submission: dict) -> dict:
    body = {k: v for k, v in request.items() if k not in ("include", "learning_rate")}
    return post(client, body | {"submission": submission}, "/v1/check")


@pytest.mark.parametrize("loss", ["cross_entropy", "svm"])
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_check_passes_a_correct_submission_with_labels(client, loss, convention):
    request = with_labels(3, convention, loss)
    expected = reference(request)
    submission = {
        "loss": expected["loss"],
        "layers": [
            {k: layer[k].tolist() for k in ("dz", "dW", "db")} for layer in expected["layers"]
        ],
    }
    report = check(client, request, submission)
    assert report["passed"] and report["checked"] == 7


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh"])
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_check_fails_a_wrong_dW_with_labels_and_a_diagnosis(client, convention, hidden):
    # sigmoid and tanh layers bring in every mistake of the catalogue, the output's included
    request = with_labels(4, convention, "svm")
    request["layers"][0]["activation"] = hidden
    request["layers"][1]["activation"] = "sigmoid"
    expected = reference(request)
    wrong = expected["layers"][0]["dW"] * 1.5 + 0.01
    submission = {
        "layers": [{"dW": wrong.tolist()}, {"dW": expected["layers"][1]["dW"].tolist()}],
    }
    report = check(client, request, submission)
    assert not report["passed"] and report["correct"] == 1
    result = report["results"][0]
    assert result["field"] == "layers.0.dW" and result["diagnosis"] == "wrong_values"


def test_check_names_a_sign_flip_with_labels(client):
    request = with_labels(6, "numpy", "cross_entropy")
    expected = reference(request)
    submission = {"layers": [None, {"dz": (-expected["layers"][1]["dz"]).tolist()}]}
    report = check(client, request, submission)
    assert report["results"][0]["diagnosis"] == "sign_flipped"


def test_check_with_hinge_grades_without_error(client):
    request, batch, n_out = network(2, "numpy", "hinge")
    request["targets"] = np.ones((batch, n_out)).tolist()
    expected = reference(request)
    report = check(client, request, {"loss": expected["loss"] + 1.0, "layers": [None, None]})
    assert report["results"][0]["diagnosis"] in ("wrong_values", "summed_instead_of_averaged")


# -- cost: labels are batch numbers ------------------------------------------------------------


def labels_problem(batch: int, sizes: tuple[int, ...], loss: str, labels: bool) -> Problem:
    rng = np.random.default_rng(0)
    y = rng.integers(sizes[-1], size=batch)
    return Problem(
        inputs=rng.normal(size=(batch, sizes[0])),
        targets=y if labels else np.eye(sizes[-1])[y],
        layers=tuple(
            dense_layer(rng.normal(size=(n_in, n_out)) / n_in**0.5, rng.normal(size=n_out), act)
            for n_in, n_out, act in zip(sizes[:-1], sizes[1:], ["relu", OUTPUT[loss]])
        ),
        loss=loss,
        l2=0.1,
    )


def test_label_targets_count_as_batch_numbers_not_batch_times_classes():
    batch, sizes = 100, (20, 30, 10)
    parameters = 20 * 30 + 30 + 30 * 10 + 10
    labels = NetworkShape.of(labels_problem(batch, sizes, "svm", labels=True))
    dense = NetworkShape.of(labels_problem(batch, sizes, "svm", labels=False))
    assert labels.elements() == batch * 20 + batch + parameters
    assert dense.elements() == batch * 20 + batch * 10 + parameters


def test_a_labels_request_fits_an_element_limit_its_one_hot_form_would_not():
    from service import create_app
    from service.core import Limits

    request = labelled("svm")
    client = create_app({"GRADIENT_LIMITS": Limits(max_elements=8 + 4 + 9)}).test_client()
    assert client.post("/v1/gradients", json=request).status_code == 200
    one_hot = as_one_hot(request, 3)
    assert client.post("/v1/gradients", json=one_hot).status_code == 422


@pytest.mark.parametrize("loss", ["cross_entropy", "svm"])
def test_every_pass_with_labels_holds_less_than_its_estimate(loss):
    problem = labels_problem(400, (20, 300, 40), loss, labels=True)
    assert_every_pass_within_estimate(problem)


# -- exercises ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "values"), [("svm", {0.0, 1.0}), ("hinge", {-1.0, 1.0})])
def test_exercises_draw_targets_the_loss_takes(client, loss, values):
    body = {
        "seed": 3,
        "layer_sizes": [2, 4, 3],
        "activations": ["relu", "identity"],
        "loss": loss,
        "batch_size": 8,
    }
    answer = post(client, body, "/v1/exercises")
    problem = answer["problem"]
    assert set(np.ravel(problem["targets"])) <= values
    assert client.post("/v1/gradients", json=problem).get_json() == answer["solution"]
    assert_close(answer["solution"]["loss"], reference(problem)["loss"], "loss")
