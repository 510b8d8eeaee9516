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
