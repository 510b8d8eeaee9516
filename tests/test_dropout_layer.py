"""The dropout layer: inverted dropout, out = x * mask / keep_prob, with a sent 0/1 mask or a seed.

Every number is PyTorch float64 autograd's within 1e-9 (tests/torch_reference.py, fed the
request as sent) in every convention; a seed draws exactly
``np.random.default_rng(seed).random(shape) < keep_prob`` in the client's data layout, and
the answer carries that mask; CS231n's dropout_forward / dropout_backward, d2l's
dropout_layer and Andrew Ng's forward/backward_propagation_with_dropout, written out in
NumPy below, agree with the service.  Bad layers are 422s at ``layers.<i>.<field>``.
"""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient

from service import create_app
from service.core.layers import dropout as dropout_kind
from tests.memory_cases import Case, traced
from tests.problems import CONVENTIONS, post
from tests.torch_reference import assert_close, assert_matches_torch

ALL = ["z", "a", "dz", "dx"]


def errors_of(client, request: dict, path: str = "/v1/gradients") -> dict:
    response = client.post(path, json=request)
    assert response.status_code == 422, response.get_data(as_text=True)
    return response.get_json()["errors"]


def dense(w: np.ndarray, b: np.ndarray, activation: str, convention: str) -> dict:
    """A dense layer from canonical W (n_in, n_out) and b (n_out,), laid out in the convention."""
    columns, out_by_in = convention == "columns", convention in ("torch", "columns")
    return {
        "weights": (w.T if out_by_in else w).tolist(),
        "biases": (b[:, None] if columns else b).tolist(),
        "activation": activation,
    }


def laid_out(array: np.ndarray, convention: str) -> list:
    """A canonical (batch, n) array in the client's data layout."""
    return (array.T if convention == "columns" else array).tolist()


def network(case: int, convention: str, keep_prob: float = 0.7, **dropout) -> tuple[dict, dict]:
    """[{dense, relu}, {dropout}, {dense, identity}] with mse targets; and the canonical mask.

    ``dropout`` replaces the dropout layer's mask (by default an explicit random one).
    """
    rng = np.random.default_rng(case)
    batch, n_in, hidden, n_out = 5, 4, 6, 3
    x, y = rng.normal(size=(batch, n_in)), rng.normal(size=(batch, n_out))
    w1, b1 = rng.normal(size=(n_in, hidden)), rng.normal(size=hidden)
    w2, b2 = rng.normal(size=(hidden, n_out)), rng.normal(size=n_out)
    mask = (rng.random((batch, hidden)) < keep_prob).astype(float)
    layer = {"type": "dropout", "keep_prob": keep_prob, "mask": laid_out(mask, convention)}
    request = {
        "convention": convention,
        "inputs": laid_out(x, convention),
        "targets": laid_out(y, convention),
        "loss": "mse",
        "layers": [
            dense(w1, b1, "relu", convention),
            {**layer, **dropout},
            dense(w2, b2, "identity", convention),
        ],
        "include": ALL,
    }
    return request, {"mask": mask}


def with_upstream(request: dict, seed: int) -> dict:
    """The request backpropagated from a random dL/d(output) instead of targets and a loss."""
    request = dict(request)
    shape = np.shape(request.pop("targets"))
    del request["loss"]
    return request | {"upstream": np.random.default_rng(seed).normal(size=shape).tolist()}


# -- the numbers: PyTorch float64 autograd ----------------------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("seed", range(3))
def test_an_explicit_mask_matches_torch_x_times_mask_over_keep_prob(client, convention, seed):
    request, _ = network(seed, convention)
    answer = post(client, request | {"l2": 0.1})
    assert_matches_torch(answer, request | {"l2": 0.1})
    # no parameters: no gradients of its own, and a sent mask is not echoed
    assert set(answer["layers"][1]) == set(ALL)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("seed", range(3))
def test_an_explicit_mask_with_upstream_matches_torch(client, convention, seed):
    request = with_upstream(network(seed, convention)[0], seed)
    answer = post(client, request)
    assert answer["loss"] is None
    assert_matches_torch(answer, request)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_dropout_with_an_activation_and_as_the_first_layer_matches_torch(client, convention):
    request, _ = network(11, convention)
    request["layers"][1]["activation"] = "tanh"
    assert_matches_torch(post(client, request), request)
    # first: its dx is dL/d(inputs); its mask drawn from a seed (the oracle draws it too)
    hidden = np.shape(request["layers"][1]["mask"])  # (batch, 6) as laid out
    first = request | {
        "inputs": np.random.default_rng(1).normal(size=hidden).tolist(),
        "layers": [{"type": "dropout", "keep_prob": 0.5, "seed": 5}, request["layers"][2]],
    }
    assert_matches_torch(post(client, first), first)


# -- the seed: the contract's draw, in the client's layout ------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize(("seed", "keep_prob"), [(0, 0.5), (7, 0.8), (2**40 + 3, 0.25)])
def test_a_seed_draws_default_rng_random_below_keep_prob_in_the_clients_layout(
    client, convention, seed, keep_prob
):
    request, _ = network(seed % 97, convention, keep_prob, mask=None, seed=seed)
    answer = post(client, request)
    # the layer's input as the client lays it out: (batch 5, 6 units), (6, 5) in columns
    shape = (6, 5) if convention == "columns" else (5, 6)
    drawn = np.random.default_rng(seed).random(shape) < keep_prob
    assert np.array_equal(answer["layers"][1]["mask"], drawn.astype(float))
    assert {v for row in answer["layers"][1]["mask"] for v in row} <= {0, 1}
    assert all(type(v) is int for row in answer["layers"][1]["mask"] for v in row)  # 0 and 1
    # the same request with that mask sent: the same numbers, and the mask is not echoed
    explicit = request | {"layers": [dict(layer) for layer in request["layers"]]}
    explicit["layers"][1] |= {"mask": drawn.astype(float).tolist(), "seed": None}
    sent = post(client, explicit)
    assert "mask" not in sent["layers"][1]
    assert sent["loss"] == answer["loss"]
    for got, want in zip(answer["layers"], sent["layers"], strict=True):
        for name, value in want.items():
            assert np.array_equal(got[name], value), name
    assert_matches_torch(answer, request)


def test_the_same_seed_draws_the_same_mask_in_every_pass_and_in_binary(client):
    request, _ = network(3, "numpy", mask=None, seed=42)
    request |= {"gradient_check": True, "learning_rate": 0.1}
    first, again = post(client, request), post(client, request | {"encoding": "base64"})
    binary = again["layers"][1]["mask"]
    decoded = np.frombuffer(base64.b64decode(binary["data"]), "<f8").reshape(binary["shape"])
    assert np.array_equal(decoded, first["layers"][1]["mask"])
    assert first["gradient_check"]["max_relative_error"] < 1e-6


@pytest.mark.parametrize("path", ["/v1/gradients", "/v1/check"])
def test_the_mask_is_drawn_once_per_request_however_many_passes_reuse_it(client, monkeypatch, path):
    """The gradient check re-runs forward for every nudge, the grader backward for every
    mistake: one draw serves them all (the same seed would draw the same mask anyway)."""
    draws = []

    def counted(*args):
        draws.append(args)
        return real(*args)

    real = dropout_kind.draw
    monkeypatch.setattr(dropout_kind, "draw", counted)
    request, _ = network(2, "columns", mask=None, seed=8)
    if path == "/v1/check":
        problem = {k: v for k, v in request.items() if k != "include"}
        request = problem | {"submission": {"layers": [None, {"dx": [[0.0]]}, None]}}
    else:
        request |= {"gradient_check": True, "include": ["dx"]}
    post(client, request, path)
    assert draws == [(8, (6, 5), 0.7)]  # the seed, the client's (n, batch), keep_prob


# -- the courses' own functions, written out --------------------------------------------------


def test_one_dropout_layer_is_cs231ns_dropout_forward_backward_and_d2ls_dropout_layer(client):
    rng = np.random.default_rng(231)
    x, dout, p = rng.normal(size=(8, 10)), rng.normal(size=(8, 10)), 0.6
    D = (rng.random(x.shape) < p).astype(float)
    answer = post(
        client,
        {
            "inputs": x.tolist(),
            "layers": [{"type": "dropout", "keep_prob": p, "mask": D.tolist()}],
            "upstream": dout.tolist(),
            "include": ["z", "dx"],
        },
    )
    # cs231n/layers.py dropout_forward / dropout_backward, mode "train" (p: keep probability)
    mask = D / p
    out = x * mask
    dx = dout * mask
    assert_close(answer["layers"][0]["z"], out, "out")
    assert_close(answer["layers"][0]["dx"], dx, "dx")
    # d2l.ai dropout_layer(X, dropout): mask * X / (1.0 - dropout), mask = rand > dropout
    dropout = 1 - p
    assert_close(answer["layers"][0]["z"], D * x / (1.0 - dropout), "d2l dropout_layer")


def test_ngs_course_2_backward_propagation_with_dropout_gives_dx_and_dW(client):
    """Andrew Ng, Improving Deep Neural Networks, week 1: samples are columns."""
    rng = np.random.default_rng(2)
    m, keep_prob = 7, 0.8
    X, Y = rng.normal(size=(3, m)), (rng.random((1, m)) < 0.5).astype(float)
    W1, b1 = rng.normal(size=(5, 3)), rng.normal(size=(5, 1))
    W2, b2 = rng.normal(size=(1, 5)), rng.normal(size=(1, 1))
    D1 = (rng.random((5, m)) < keep_prob).astype(float)  # D1 = np.random.rand(...) < keep_prob
    # forward_propagation_with_dropout
    Z1 = W1 @ X + b1
    A1 = np.maximum(0, Z1)
    A1 = A1 * D1
    A1 = A1 / keep_prob
    Z2 = W2 @ A1 + b2
    A2 = 1 / (1 + np.exp(-Z2))
    # backward_propagation_with_dropout
    dZ2 = A2 - Y
    dW2 = 1.0 / m * dZ2 @ A1.T
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = W2.T @ dZ2
    dA1_dropped = dA1 * D1 / keep_prob
    dZ1 = dA1_dropped * (A1 > 0)
    dW1 = 1.0 / m * dZ1 @ X.T
    db1 = 1.0 / m * np.sum(dZ1, axis=1, keepdims=True)
    dX = W1.T @ dZ1

    answer = post(
        client,
        {
            "convention": "columns",
            "inputs": X.tolist(),
            "targets": Y.tolist(),
            "loss": "bce",
            "layers": [
                {"weights": W1.tolist(), "biases": b1.tolist(), "activation": "relu"},
                {"type": "dropout", "keep_prob": keep_prob, "mask": D1.tolist()},
                {"weights": W2.tolist(), "biases": b2.tolist(), "activation": "sigmoid"},
            ],
            "include": ["a", "dx"],
        },
    )
    first, drop, out = answer["layers"]
    assert_close(drop["a"], A1, "A1 after dropout")
    assert_close(out["a"], A2, "A2")
    assert_close(out["dW"], dW2, "dW2")
    assert_close(out["db"], db2, "db2")
    assert_close(first["dW"], dW1, "dW1")
    assert_close(first["db"], db1, "db1")
    # Ng's dZ2 = A2 - Y leaves the cost's 1/m to dW and db: his dA are m times dL/dA
    assert_close(out["dx"], dA1 / m, "dA1 = W2.T dZ2")
    assert_close(drop["dx"], dA1_dropped / m, "dA1 * D1 / keep_prob")
    assert_close(first["dx"], dX / m, "dA0")


# -- keep_prob 1, the gradient check, learning_rate -------------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("how", ["ones", "seed"])
def test_keep_prob_one_is_the_identity(client, convention, how):
    request, _ = network(5, convention, keep_prob=1.0)
    if how == "seed":  # random() < 1.0 always: every unit kept
        request["layers"][1] = {"type": "dropout", "keep_prob": 1.0, "seed": 9}
    else:
        request["layers"][1]["mask"] = np.ones(np.shape(request["layers"][1]["mask"])).tolist()
    with_dropout = post(client, request)
    without = post(client, request | {"layers": request["layers"][::2]})
    assert with_dropout["loss"] == without["loss"]
    assert with_dropout["layers"][1]["z"] == with_dropout["layers"][0]["a"]
    assert with_dropout["layers"][1]["dx"] == with_dropout["layers"][1]["dz"]
    for got, want in zip(with_dropout["layers"][::2], without["layers"], strict=True):
        assert got == want
    if how == "seed":
        assert np.all(np.array(with_dropout["layers"][1]["mask"]) == 1.0)


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("how", ["mask", "seed"])
def test_the_gradient_check_with_dx_passes_through_a_dropout_layer(client, convention, how):
    request, _ = network(8, convention)
    if how == "seed":
        request["layers"][1] = {"type": "dropout", "keep_prob": 0.6, "seed": 123}
    answer = post(client, request | {"gradient_check": True, "include": ["dx"]})
    check = answer["gradient_check"]
    assert check["max_relative_error"] < 1e-6
    assert set(check["layers"][1]) == {"dx"}  # nothing else to check: no parameters
    assert check["layers"][1]["dx"] < 1e-6 and check["layers"][0]["dW"] < 1e-6


def test_learning_rate_answers_an_empty_object_for_a_dropout_layer(client):
    request, _ = network(4, "torch")
    answer = post(client, request | {"learning_rate": 0.5})
    updated = answer["updated_layers"]
    assert updated[1] == {}
    assert set(updated[0]) == set(updated[2]) == {"weights", "biases"}
    expected = np.array(request["layers"][0]["weights"]) - 0.5 * np.array(answer["layers"][0]["dW"])
    assert_close(updated[0]["weights"], expected, "weights - lr * dW")


# -- errors: 422 at the field's path, never a 500 ---------------------------------------------

SEED_RULE = "np.random.default_rng(seed).random(shape) < keep_prob"


@pytest.mark.parametrize(
    ("convention", "change", "path", "fragments"),
    [
        ("numpy", {"keep_prob": 0}, "keep_prob", ["must be in (0, 1]", "got 0"]),
        ("numpy", {"keep_prob": 1.5}, "keep_prob", ["must be in (0, 1]", "got 1.5"]),
        ("numpy", {"keep_prob": None}, "keep_prob", ["missing", "(0, 1]"]),
        ("numpy", {"keep_prob": "0.5"}, "keep_prob", ["expected a JSON number"]),
        (
            "numpy",
            {"mask": np.ones((5, 5)).tolist()},
            "mask",
            [
                "got (5, 5), expected (5, 6): the mask covers the layer's input, (batch, n) in the "
                "numpy convention. The batch is 5 (from the inputs) and layer 0 has 6 units."
            ],
        ),
        (
            "columns",
            {"mask": np.ones((5, 6)).tolist()},
            "mask",
            [
                "got (5, 6), expected (6, 5): the mask covers the layer's input, (n, batch) in the "
                "columns convention; it looks transposed."
            ],
        ),
        (
            "numpy",
            {"mask": [[1, 0, 1, 1, 1, 1], [1, 1, 1, 0.5, 1, 1], *[[1] * 6] * 3]},
            "mask",
            ["mask[1][3] is 0.5", "0 (drop the unit) or 1 (keep it)"],
        ),
        (
            "torch",
            {"mask": [[1, 0, 1, 1, 1, 2]] * 5},
            "mask",
            ["mask[0][5] is 2", "not D / keep_prob"],
        ),
        ("numpy", {"seed": 3}, "mask", ["both sent: send one of them", SEED_RULE]),
        (
            "numpy",
            {"mask": None},
            "mask",
            ["missing: a dropout layer needs a mask or a seed", "D = np.random.rand(", SEED_RULE],
        ),
        ("numpy", {"mask": None, "seed": -1}, "seed", ["from 0 to 2**63 - 1, got -1"]),
        ("numpy", {"mask": None, "seed": 2.5}, "seed", ["expected a whole number"]),
        ("numpy", {"mask": None, "seed": 4.0}, "seed", ["without a decimal point (4)"]),
        ("numpy", {"p": 0.5}, "p", ["unknown field", "keep_prob, mask, seed"]),
    ],
)
def test_a_bad_dropout_layer_is_422_at_its_field(client, convention, change, path, fragments):
    request, _ = network(1, convention)
    layer = {**request["layers"][1], **change}
    request["layers"][1] = {k: v for k, v in layer.items() if v is not None}  # None: left out
    errors = errors_of(client, request)
    assert list(errors) == [f"layers.1.{path}"], errors
    message = " ".join(errors[f"layers.1.{path}"])
    for fragment in fragments:
        assert fragment in message, message


def test_a_misspelt_type_gets_a_did_you_mean(client):
    request, _ = network(1, "numpy")
    request["layers"][1]["type"] = "droput"
    errors = errors_of(client, request)
    assert "did you mean 'dropout'" in " ".join(errors["layers.1.type"]).lower()


# -- /v1/check: every field of a dropout layer graded -----------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("how", ["mask", "seed"])
def test_check_grades_a_dropout_layers_z_a_dz_and_dx(client, convention, how):
    request, _ = network(6, convention)
    if how == "seed":
        request["layers"][1] = {"type": "dropout", "keep_prob": 0.5, "seed": 77}
    right = post(client, request)["layers"][1]
    wrong_dx = (2 * np.array(right["dx"])).tolist()
    submission = {
        "layers": [None, {**{k: right[k] for k in ("z", "a", "dz")}, "dx": wrong_dx}, None]
    }
    problem = {k: v for k, v in request.items() if k != "include"}
    report = post(client, problem | {"submission": submission}, "/v1/check")
    results = {r["field"]: r for r in report["results"]}
    assert [results[f"layers.1.{k}"]["passed"] for k in ("z", "a", "dz")] == [True] * 3
    assert results["layers.1.dx"]["passed"] is False
    assert results["layers.1.dx"]["diagnosis"] is not None
    transposed = {"layers": [None, {"dx": np.array(right["dx"]).T.tolist()}, None]}
    report = post(client, problem | {"submission": transposed}, "/v1/check")
    assert report["results"][0]["passed"] is False
    assert report["results"][0]["diagnosis"] == "transposed"


@pytest.mark.parametrize("name", ["dW", "db"])
def test_check_refuses_a_gradient_submitted_for_a_dropout_layer(client, name):
    request, _ = network(6, "numpy")
    problem = {k: v for k, v in request.items() if k != "include"}
    submission = {"layers": [None, {name: [[0.0]]}, None]}
    errors = errors_of(client, problem | {"submission": submission}, "/v1/check")
    assert list(errors) == [f"submission.layers.1.{name}"]
    assert errors[f"submission.layers.1.{name}"] == [
        f"layer 1 is a dropout layer (it has no parameters), so it has no {name} to check; "
        f"leave submission.layers.1.{name} out."
    ]


# -- the cost model: a small body with a seed can ask for a huge mask -------------------------


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        ({}, "layer 1's mask (100,000 x 50,000) among them"),  # its JSON text is the largest
        ({"include": [], "encoding": "base64"}, "with a dropout mask drawn from a seed"),
    ],
)
def test_a_huge_seeded_mask_is_refused_by_the_cost_model_before_it_is_drawn(
    client, monkeypatch, answer, named
):
    def never(*args, **kwargs):
        raise AssertionError("the mask was drawn")

    monkeypatch.setattr(dropout_kind, "draw", never)
    batch, width = 100_000, 50_000
    request = {
        "inputs": [[0]] * batch,  # a 700 KB body asks for a 100,000 x 50,000 mask
        "layers": [
            {"weights": [[0] * width], "activation": "relu"},
            {"type": "dropout", "keep_prob": 0.5, "seed": 1},
            {"weights": [[0]] * width, "activation": "identity"},
        ],
        "targets": [[0]] * batch,
        "loss": "mse",
    } | answer
    response = client.post("/v1/gradients", json=request)
    assert response.status_code == 422, response.get_data(as_text=True)
    [message] = response.get_json()["errors"]["_request"]
    assert named in message
    assert "GRADIENT_MAX_REQUEST_BYTES" in message


def dropout_network(batch: int, sizes=(200, 400, 10), **extra) -> dict:
    """[{dense, relu}, {dropout with a seed}, {dense}] with mse targets, random values."""
    rng = np.random.default_rng(batch)
    n_in, hidden, n_out = sizes
    return {
        "inputs": rng.normal(size=(batch, n_in)).tolist(),
        "targets": rng.normal(size=(batch, n_out)).tolist(),
        "loss": "mse",
        "layers": [
            dense(rng.normal(size=(n_in, hidden)), rng.normal(size=hidden), "relu", "numpy"),
            {"type": "dropout", "keep_prob": 0.8, "seed": 3},
            dense(rng.normal(size=(hidden, n_out)), rng.normal(size=n_out), "tanh", "numpy"),
        ],
    } | extra


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/gradients", dropout_network(500, include=["z", "a", "dz", "dx"])),
        ("/v1/gradients", dropout_network(800, encoding="base64", learning_rate=0.1)),
        ("/v1/gradients", dropout_network(40, (4, 30, 3), gradient_check=True, include=["dx"])),
        (
            "/v1/check",
            dropout_network(500, submission={"layers": [None, {"dx": [[0.0]]}, {"dW": [[0.0]]}]}),
        ),
    ],
    ids=["json", "base64", "gradient-check", "check"],
)
def test_the_cost_models_estimate_bounds_what_a_seeded_dropout_request_holds(path, body):
    """tracemalloc from the cost check to the written answer (tests/memory_cases.py)."""
    app = create_app({"RATELIMIT_ENABLED": False})
    app.test_client_class = FlaskClient  # not the contract gate: it would parse the answer here
    measured = traced(app.test_client(), Case("dropout", path, orjson.dumps(body)))
    assert measured.status == 200
    print(f"{path}: {measured.view:,} bytes held, {measured.estimate.bytes:,} estimated")
    assert measured.view <= measured.estimate.bytes, (measured.view, measured.estimate.bytes)
