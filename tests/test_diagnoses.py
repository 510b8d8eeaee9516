"""Hand-written buggy students, one bug each, graded by /v1/check (issue 13, items 1 and 5).

Three students write a two-layer network's backward pass the way their course teaches it:

- CS231n (numpy layout, x @ W + b, flat biases): softmax scores with integer labels,
  ``dscores[range(N), y] -= 1``, a sigmoid hidden layer;
- Andrew Ng (columns layout, W @ A + b, (n, 1) biases): ``dZ2 = A2 - Y`` and
  ``dW2 = 1/m * dZ2 @ A1.T``, a tanh hidden layer, a sigmoid output under mse;
- PyTorch's layout (x @ W.T + b, W (out, in), (1, n) biases): mse over every element, a
  tanh hidden layer and a sigmoid output.

Each puts the reduction's 1/N in one of three places: inside dL/da (``"da"``), on the
output's dz (``"dz"``), or in dW and db only (``"dW"``, Ng's); the problem declares the
matching ``dz_scale``.  Nothing here uses the service's code to make an answer.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

BATCH = 5


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


class Student(NamedTuple):
    course: str
    bug: str  # "none" or a key of BUGS
    placement: str  # where the 1/N goes: "da", "dz" or "dW"

    @property
    def id(self) -> str:
        return f"{self.course}-{self.bug}-1/N-in-{self.placement}"


# -- the problems, in each course's own layout -------------------------------------------------


def cs231n_problem(rng):
    X = rng.normal(size=(BATCH, 3))
    y = rng.integers(0, 3, size=BATCH)
    W1, b1 = rng.normal(scale=0.8, size=(3, 4)), rng.normal(scale=0.3, size=4)
    W2, b2 = rng.normal(scale=0.8, size=(4, 3)), rng.normal(scale=0.3, size=3)
    request = {
        "inputs": X,
        "targets": y,
        "layers": [
            {"weights": W1, "biases": b1, "activation": "sigmoid"},
            {"weights": W2, "biases": b2, "activation": "softmax"},
        ],
        "loss": "cross_entropy",
        "convention": "numpy",
    }
    return request, (X, y, W1, b1, W2, b2)


def ng_problem(rng):
    X = rng.normal(size=(3, BATCH))  # (n_x, m)
    Y = rng.uniform(0.05, 0.95, size=(1, BATCH))
    W1, b1 = rng.normal(scale=0.8, size=(4, 3)), rng.normal(scale=0.3, size=(4, 1))
    W2, b2 = rng.normal(scale=0.8, size=(1, 4)), rng.normal(scale=0.3, size=(1, 1))
    request = {
        "inputs": X,
        "targets": Y,
        "layers": [
            {"weights": W1, "biases": b1, "activation": "tanh"},
            {"weights": W2, "biases": b2, "activation": "sigmoid"},
        ],
        "loss": "mse",
        "convention": "columns",
    }
    return request, (X, Y, W1, b1, W2, b2)


def torch_problem(rng):
    x = rng.normal(size=(BATCH, 3))
    y = rng.uniform(0.05, 0.95, size=(BATCH, 2))
    W1, b1 = rng.normal(scale=0.8, size=(4, 3)), rng.normal(scale=0.3, size=(1, 4))
    W2, b2 = rng.normal(scale=0.8, size=(2, 4)), rng.normal(scale=0.3, size=(1, 2))
    request = {
        "inputs": x,
        "targets": y,
        "layers": [
            {"weights": W1, "biases": b1, "activation": "tanh"},
            {"weights": W2, "biases": b2, "activation": "sigmoid"},
        ],
        "loss": "mse",
        "convention": "torch",
    }
    return request, (x, y, W1, b1, W2, b2)


# -- the students --------------------------------------------------------------------------------


def cs231n_student(arrays, bug, placement):
    X, y, W1, b1, W2, b2 = arrays
    N = X.shape[0]
    h = sigmoid(X @ W1 + b1)
    scores = h @ W2 + b2
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    dscores = probs.copy()
    dscores[range(N), y] -= 1
    if bug == "sign_flipped":
        dscores = -dscores  # y - probs
    n = 1 if bug == "forgot_mean" else N
    if placement != "dW":
        dscores /= n  # softmax and cross-entropy fused: dL/da and dz get the same 1/N
    k = n if placement == "dW" else 1
    dW2 = h.T @ dscores / k
    db2 = np.sum(dscores, axis=0) / k
    dh = dscores @ W2.T
    dz1 = {
        "none": lambda: dh * h * (1 - h),
        "sign_flipped": lambda: dh * h * (1 - h),
        "forgot_mean": lambda: dh * h * (1 - h),
        "derivative_of_preactivation": lambda: dh * (X @ W1 + b1) * (1 - (X @ W1 + b1)),
        "missing_activation_derivative": lambda: dh,
        "derivative_of_error": lambda: dh * (1 - dh),  # the seed's bug, in the hidden layer
    }[bug]()
    dW1 = X.T @ dz1 / k
    db1 = np.sum(dz1, axis=0) / k
    return [{"dz": dz1, "dW": dW1, "db": db1}, {"dz": dscores, "dW": dW2, "db": db2}]


def ng_student(arrays, bug, placement):
    X, Y, W1, b1, W2, b2 = arrays
    m = X.shape[1]
    Z1 = W1 @ X + b1
    A1 = np.tanh(Z1)
    A2 = sigmoid(W2 @ A1 + b2)
    n = 1 if bug == "forgot_mean" else m  # mse with one output: the mean is over m
    error = (Y - A2) if bug == "sign_flipped" else (A2 - Y)
    dA2 = 2 * error
    if placement == "da":
        dA2 = dA2 / n
    if bug == "derivative_of_error":
        dh2 = A2 - Y
        dZ2 = dh2 * (1 - dh2)  # the seed's bug, as the seed writes it
    else:
        dZ2 = dA2 * A2 * (1 - A2)
    if placement == "dz":
        dZ2 = dZ2 / n
    k = n if placement == "dW" else 1
    dW2 = 1 / k * dZ2 @ A1.T
    db2 = 1 / k * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = W2.T @ dZ2
    dZ1 = {
        "derivative_of_preactivation": lambda: dA1 * (1 - Z1**2),
        "missing_activation_derivative": lambda: dA1,
    }.get(bug, lambda: dA1 * (1 - A1**2))()
    dW1 = 1 / k * dZ1 @ X.T
    db1 = 1 / k * np.sum(dZ1, axis=1, keepdims=True)
    return [{"dz": dZ1, "dW": dW1, "db": db1}, {"dz": dZ2, "dW": dW2, "db": db2}]


def torch_student(arrays, bug, placement):
    x, y, W1, b1, W2, b2 = arrays
    z1 = x @ W1.T + b1
    h = np.tanh(z1)
    out = sigmoid(h @ W2.T + b2)
    numel = 1 if bug == "forgot_mean" else out.size  # MSELoss: the mean over every element
    error = (y - out) if bug == "sign_flipped" else (out - y)
    grad = 2 * error / (numel if placement == "da" else 1)
    right = grad * out * (1 - out)
    dz2 = grad * (1 - grad) if bug == "derivative_of_error" else right  # a (1 - a), fed grad
    if placement == "dz":
        dz2 = dz2 / numel
    k = numel if placement == "dW" else 1
    dW2 = dz2.T @ h / k
    db2 = dz2.sum(0, keepdims=True) / k
    dh = dz2 @ W2
    dz1 = {
        "derivative_of_preactivation": lambda: dh * (1 - z1**2),
        "missing_activation_derivative": lambda: dh,
    }.get(bug, lambda: dh * (1 - h**2))()
    dW1 = dz1.T @ x / k
    db1 = dz1.sum(0, keepdims=True) / k
    return [{"dz": dz1, "dW": dW1, "db": db1}, {"dz": dz2, "dW": dW2, "db": db2}]


COURSES = {
    "cs231n": (cs231n_problem, cs231n_student),
    "ng": (ng_problem, ng_student),
    "torch": (torch_problem, torch_student),
}

#: bug -> the deepest layer it reaches (every field of it and of the layers below it carries
#: the code; the layers above pass)
BUGS = {
    "sign_flipped": 1,
    "forgot_mean": 1,
    "derivative_of_preactivation": 0,
    "missing_activation_derivative": 0,
}
#: the seed's bug is in the output layer for the sigmoid outputs, in the hidden one for CS231n
DERIVATIVE_OF_ERROR = {"cs231n": 0, "ng": 1, "torch": 1}


def expected(student: Student) -> dict[str, str]:
    if student.bug == "none":
        return {f"layers.{i}.{name}": "passed" for i in (0, 1) for name in ("dz", "dW", "db")}
    if student.bug == "derivative_of_error":
        deepest = DERIVATIVE_OF_ERROR[student.course]
    else:
        deepest = BUGS[student.bug]
    code = "summed_instead_of_averaged" if student.bug == "forgot_mean" else student.bug
    outcome = {}
    for i in (0, 1):
        for name in ("dz", "dW", "db"):
            wrong = i <= deepest
            if student.bug == "forgot_mean" and student.placement == "dW" and name == "dz":
                wrong = False  # Ng's dz has no 1/N to forget
            outcome[f"layers.{i}.{name}"] = code if wrong else "passed"
    return outcome


STUDENTS = [
    Student(course, bug, placement)
    for course in COURSES
    for bug in ("none", *BUGS, "derivative_of_error")
    for placement in ("da", "dz", "dW")
]


def as_json(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def request_for(student: Student):
    make_problem, solve = COURSES[student.course]
    request, arrays = make_problem(np.random.default_rng(13))
    request = {
        **{k: as_json(v) for k, v in request.items() if k != "layers"},
        "layers": [{k: as_json(v) for k, v in layer.items()} for layer in request["layers"]],
        "dz_scale": "per_sample" if student.placement == "dW" else "reduced",
    }
    layers = solve(arrays, student.bug, student.placement)
    submission = {"layers": [{k: v.tolist() for k, v in layer.items()} for layer in layers]}
    return request | {"submission": submission}


def outcomes(body) -> dict[str, str]:
    return {r["field"]: "passed" if r["passed"] else r["diagnosis"] for r in body["results"]}


@pytest.mark.parametrize("student", STUDENTS, ids=lambda s: s.id)
def test_each_hand_written_student_gets_exactly_the_code_of_their_bug(client, student):
    response = client.post("/v1/check", json=request_for(student))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert outcomes(body) == expected(student)
    if student.bug == "none":
        assert body["passed"] is True
        assert all(r["diagnosis"] is None for r in body["results"])


def test_the_seeds_bug_in_ngs_template_is_derivative_of_error_with_the_default_dz_scale(client):
    """The issue's first finding: dz2 = dh2 * (1 - dh2), dh2 = a2 - y, 1/m in dW and db,
    graded without saying dz_scale: every field is named derivative_of_error."""
    body = request_for(Student("ng", "derivative_of_error", "dW"))
    del body["dz_scale"]
    response = client.post("/v1/check", json=body)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert {r["field"]: r["diagnosis"] for r in results} == {
        f"layers.{i}.{name}": "derivative_of_error" for i in (0, 1) for name in ("dz", "dW", "db")
    }
    message = next(r["message"] for r in results if r["field"] == "layers.1.dz")
    assert "`dh = a - y; dz = dh * (1 - dh)`" in message


def test_a_correct_ng_student_passes_with_per_sample_and_is_told_why_dz_fails_without(client):
    body = request_for(Student("ng", "none", "dW"))
    assert client.post("/v1/check", json=body).get_json()["passed"] is True
    del body["dz_scale"]
    results = client.post("/v1/check", json=body).get_json()["results"]
    assert {r["field"]: r["diagnosis"] for r in results} == {
        f"layers.{i}.{name}": "summed_instead_of_averaged" if name == "dz" else None
        for i in (0, 1)
        for name in ("dz", "dW", "db")
    }


# -- dz_scale on /v1/gradients and /v1/exercises (item 5) ----------------------------------------


def test_per_sample_dz_is_the_reduced_dz_times_N_and_dW_db_are_unchanged(client):
    body = request_for(Student("ng", "none", "dW"))
    problem = {k: v for k, v in body.items() if k not in ("submission", "dz_scale")}
    problem["include"] = ["dz", "dx"]
    reduced = client.post("/v1/gradients", json=problem).get_json()
    per_sample = client.post(
        "/v1/gradients", json=problem | {"dz_scale": "per_sample", "gradient_check": True}
    ).get_json()
    assert per_sample["loss"] == reduced["loss"]
    for r, p in zip(reduced["layers"], per_sample["layers"]):
        np.testing.assert_allclose(np.array(p["dz"]), BATCH * np.array(r["dz"]), rtol=1e-12)
        np.testing.assert_allclose(np.array(p["dx"]), BATCH * np.array(r["dx"]), rtol=1e-12)
        for name in ("dW", "db"):
            np.testing.assert_allclose(p[name], r[name], rtol=1e-12)
    # the gradient check compares dx with dL/dx: the per-sample dx, reduced, agrees
    assert per_sample["gradient_check"]["max_relative_error"] < 1e-6


def test_ngs_hand_written_dZ_is_the_per_sample_answer(client):
    body = request_for(Student("ng", "none", "dW"))
    submitted = body.pop("submission")["layers"]
    answer = client.post("/v1/gradients", json=body | {"include": ["dz"]}).get_json()
    for mine, theirs in zip(submitted, answer["layers"]):
        for name in ("dz", "dW", "db"):
            np.testing.assert_allclose(theirs[name], mine[name], rtol=1e-9)


def test_an_unknown_dz_scale_is_a_422_naming_the_choices(client):
    body = request_for(Student("torch", "none", "da")) | {"dz_scale": "per_batch"}
    response = client.post("/v1/check", json=body)
    assert response.status_code == 422
    message = " ".join(response.get_json()["errors"]["dz_scale"])
    assert "reduced" in message and "per_sample" in message


def test_an_exercise_with_per_sample_dz_says_so_and_its_solution_is_the_gradients_answer(
    client,
):
    spec = {
        "seed": 3,
        "layer_sizes": [2, 3, 1],
        "activations": ["tanh", "sigmoid"],
        "loss": "bce",
        "convention": "columns",
    }
    plain = client.post("/v1/exercises", json=spec).get_json()
    assert "dz_scale" not in plain["problem"]  # the default: exercises as before
    exercise = client.post("/v1/exercises", json=spec | {"dz_scale": "per_sample"}).get_json()
    assert exercise["problem"]["dz_scale"] == "per_sample"
    again = client.post("/v1/exercises", json=spec | {"dz_scale": "per_sample"})
    assert again.data == client.post("/v1/exercises", json=spec | {"dz_scale": "per_sample"}).data
    answer = client.post("/v1/gradients", json=exercise["problem"]).get_json()
    assert answer == exercise["solution"]
    include = exercise["problem"] | {"include": ["dz"]}
    dz = np.array(client.post("/v1/gradients", json=include).get_json()["layers"][1]["dz"])
    reduced = include | {"dz_scale": "reduced"}
    dz_reduced = np.array(client.post("/v1/gradients", json=reduced).get_json()["layers"][1]["dz"])
    np.testing.assert_allclose(dz, 4 * dz_reduced, rtol=1e-12)  # batch_size 4, one output


@pytest.mark.parametrize("schema", ["GradientsRequest", "CheckRequest", "ExerciseRequest"])
def test_dz_scale_is_documented_in_the_openapi_with_its_choices_and_courses(client, schema):
    document = client.get("/openapi.json").get_json()
    field = document["components"]["schemas"][schema]["properties"]["dz_scale"]
    assert field["enum"] == ["reduced", "per_sample"] and field["default"] == "reduced"
    assert "Andrew Ng" in field["description"] and "CS231n" in field["description"]


# -- the mistakes that had no code (item 4): more hand-written students ---------------------------


def graded(client, request: dict, layers: list[dict], loss: float | None = None) -> dict:
    """Grade a student's arrays (numpy arrays, in the problem's own layout)."""
    submission = {"layers": [{k: v.tolist() for k, v in layer.items()} for layer in layers]}
    if loss is not None:
        submission["loss"] = loss
    body = {k: as_json(v) for k, v in request.items() if k != "layers"}
    body["layers"] = [{k: as_json(v) for k, v in layer.items()} for layer in request["layers"]]
    response = client.post("/v1/check", json=body | {"submission": submission})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def every_field(code_of_layer: dict[int, str], names=("dz", "dW", "db")) -> dict[str, str]:
    return {f"layers.{i}.{n}": code for i, code in code_of_layer.items() for n in names}


def torch_mse_student(rng, *, two=2, divide_by="numel", hidden=4, dW2_from_inputs=False):
    """PyTorch's layout, mse over every element; ``two`` is the derivative's factor."""
    x, y = rng.normal(size=(BATCH, 3)), rng.uniform(0.05, 0.95, size=(BATCH, 2))
    W1, b1 = rng.normal(scale=0.8, size=(hidden, 3)), rng.normal(scale=0.3, size=(1, hidden))
    W2, b2 = rng.normal(scale=0.8, size=(2, hidden)), rng.normal(scale=0.3, size=(1, 2))
    h = np.tanh(x @ W1.T + b1)
    out = sigmoid(h @ W2.T + b2)
    n = {"numel": out.size, "batch": out.shape[0]}[divide_by]
    dz2 = two * (out - y) / n * out * (1 - out)
    dz1 = (dz2 @ W2) * (1 - h**2)
    dW2 = dz2.T @ (x if dW2_from_inputs else h)
    layers = [
        {"dz": dz1, "dW": dz1.T @ x, "db": dz1.sum(0, keepdims=True)},
        {"dz": dz2, "dW": dW2, "db": dz2.sum(0, keepdims=True)},
    ]
    request = {
        "inputs": x,
        "targets": y,
        "layers": [
            {"weights": W1, "biases": b1, "activation": "tanh"},
            {"weights": W2, "biases": b2, "activation": "sigmoid"},
        ],
        "loss": "mse",
        "convention": "torch",
    }
    return request, layers


def test_mse_without_its_2_is_scaled_by_constant_one_half_in_every_field(client):
    request, layers = torch_mse_student(np.random.default_rng(1), two=1)
    body = graded(client, request, layers)
    assert outcomes(body) == every_field({0: "scaled_by_constant", 1: "scaled_by_constant"})
    message = body["results"][0]["message"]
    assert "is 0.5x the right value" in message and "the 2 is missing" in message


def test_mse_divided_by_the_batch_only_is_reduced_over_batch_only(client):
    request, layers = torch_mse_student(np.random.default_rng(2), divide_by="batch")
    body = graded(client, request, layers)
    code = "reduced_over_batch_only"
    assert outcomes(body) == every_field({0: code, 1: code})
    assert "batch * n_out (10)" in body["results"][-1]["message"]


def test_dW_built_from_the_inputs_instead_of_the_hidden_activation_is_wrong_layer_input(client):
    request, layers = torch_mse_student(np.random.default_rng(3), hidden=3, dW2_from_inputs=True)
    body = graded(client, request, layers)
    expected = every_field({0: "passed", 1: "passed"}) | {"layers.1.dW": "wrong_layer_input"}
    assert outcomes(body) == expected
    message = next(r["message"] for r in body["results"] if r["field"] == "layers.1.dW")
    assert (
        "built from the inputs, but dW pairs dz with the layer's own input a_prev, "
        "here layer 0's activation" in message
    )
    assert message.endswith("Fix: `dW = dz.T @ a_prev`.")


def test_ngs_one_over_m_applied_in_dZ_and_again_in_dW_is_scaled_by_constant_1_over_m(client):
    request, arrays = ng_problem(np.random.default_rng(4))
    layers = ng_student(arrays, "none", "dz")  # dZ2 = (...) / m: dz right with dz_scale reduced
    m = BATCH
    for layer in layers:  # ... and 1/m again in dW and db, as the course writes them
        layer["dW"], layer["db"] = layer["dW"] / m, layer["db"] / m
    body = graded(client, request, layers)
    expected = every_field({0: "scaled_by_constant", 1: "scaled_by_constant"}, ("dW", "db"))
    assert outcomes(body) == expected | every_field({0: "passed", 1: "passed"}, ("dz",))
    message = body["results"][1]["message"]
    assert f"is {1 / m:g}x the right value" in message and "applied twice" in message


def test_ngs_dA1_equal_to_dZ2_without_W2_is_missing_weights_in_chain(client):
    request, (X, Y, W1, b1, W2, b2) = ng_problem(np.random.default_rng(5))
    m = X.shape[1]
    A1 = np.tanh(W1 @ X + b1)
    A2 = sigmoid(W2 @ A1 + b2)
    dZ2 = 2 * (A2 - Y) * A2 * (1 - A2)
    dZ1 = dZ2 * (1 - A1**2)  # the bug: W2.T @ dZ2 forgotten; (1, m) broadcasts over (4, m)
    layers = [
        {"dz": dZ1 / m, "dW": dZ1 @ X.T / m, "db": np.sum(dZ1, axis=1, keepdims=True) / m},
        {"dz": dZ2 / m, "dW": dZ2 @ A1.T / m, "db": np.sum(dZ2, axis=1, keepdims=True) / m},
    ]
    body = graded(client, request, layers)
    code = "missing_weights_in_chain"
    assert outcomes(body) == every_field({0: code, 1: "passed"})
    message = body["results"][0]["message"]
    assert "mistake in layer 1" in message and message.endswith("Fix in layer 1: `dx = W.T @ dz`.")


def cs231n_softmax(rng, loss="cross_entropy"):
    X, y = rng.normal(size=(BATCH, 3)), rng.integers(0, 3, size=BATCH)
    W1, b1 = rng.normal(scale=0.8, size=(3, 4)), rng.normal(scale=0.3, size=4)
    W2, b2 = rng.normal(scale=0.8, size=(4, 3)), rng.normal(scale=0.3, size=3)
    request = {
        "inputs": X,
        "targets": y,
        "layers": [
            {"weights": W1, "biases": b1, "activation": "relu"},
            {
                "weights": W2,
                "biases": b2,
                "activation": "softmax" if loss == "cross_entropy" else "identity",
            },
        ],
        "loss": loss,
        "convention": "numpy",
    }
    return request, (X, y, W1, b1, W2, b2)


def cs231n_backward(arrays, dscores, *, db_axis=0):
    X, _y, W1, b1, W2, _b2 = arrays
    z1 = X @ W1 + b1
    h = np.maximum(0, z1)
    dh = dscores @ W2.T
    dz1 = dh * (z1 > 0)
    return [
        {"dz": dz1, "dW": X.T @ dz1, "db": np.sum(dz1, axis=db_axis)},
        {"dz": dscores, "dW": h.T @ dscores, "db": np.sum(dscores, axis=db_axis)},
    ]


def cs231n_scores(arrays):
    X, _y, W1, b1, W2, b2 = arrays
    return np.maximum(0, X @ W1 + b1) @ W2 + b2


def softmax(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_labels_subtracted_as_numbers_are_labels_not_one_hot(client):
    request, arrays = cs231n_softmax(np.random.default_rng(6))
    y = arrays[1]
    dscores = (softmax(cs231n_scores(arrays)) - y[:, None]) / BATCH  # the bug
    body = graded(client, request, cs231n_backward(arrays, dscores))
    assert outcomes(body) == every_field({0: "labels_not_one_hot", 1: "labels_not_one_hot"})
    assert "`dz = a - y[:, None]`" in body["results"][-1]["message"]


def test_db_summed_over_the_classes_is_summed_over_wrong_axis(client):
    request, arrays = cs231n_softmax(np.random.default_rng(7))
    dscores = softmax(cs231n_scores(arrays))
    dscores[range(BATCH), arrays[1]] -= 1
    dscores /= BATCH
    body = graded(client, request, cs231n_backward(arrays, dscores, db_axis=1))
    expected = every_field({0: "passed", 1: "passed"}, ("dz", "dW"))
    expected |= every_field({0: "summed_over_wrong_axis", 1: "summed_over_wrong_axis"}, ("db",))
    assert outcomes(body) == expected
    message = body["results"][-1]["message"]
    assert "summed over the units (axis 1)" in message
    assert message.endswith("Fix: `db = np.sum(dz, axis=0)`.")


def svm_student(arrays, *, zero_correct_margin=True, divide=True):
    _X, y, *_ = arrays
    scores = cs231n_scores(arrays)
    margins = np.maximum(0, scores - scores[range(BATCH), y][:, None] + 1)
    if zero_correct_margin:
        margins[range(BATCH), y] = 0
    loss = margins.sum() / (BATCH if divide else 1)
    binary = (margins > 0).astype(float)
    binary[range(BATCH), y] = -binary.sum(axis=1)
    dscores = binary / (BATCH if divide else 1)
    return cs231n_backward(arrays, dscores), loss


@pytest.mark.parametrize(
    ("bug", "code"),
    [
        ("none", "passed"),
        ("margin", "margin_counted_for_correct_class"),
        ("forgot_mean", "summed_instead_of_averaged"),
    ],
)
def test_cs231n_svm_students_with_integer_labels(client, bug, code):
    request, arrays = cs231n_softmax(np.random.default_rng(8), loss="svm")
    layers, loss = svm_student(
        arrays, zero_correct_margin=bug != "margin", divide=bug != "forgot_mean"
    )
    body = graded(client, request, layers, loss=loss)
    assert outcomes(body) == {"loss": code} | every_field({0: code, 1: code})
