"""Hand-written students of the new layers, one bug each, graded by /v1/check (issue 13,
item 4: batchnorm, layernorm, dropout).

Each student writes affine -> norm (or dropout) -> affine, mse, the way CS231n's
batchnorm_backward / layernorm_backward / dropout_backward solutions are written, in the
client's own layout: samples as rows (``numpy``: x @ W + b; ``torch``: x @ W.T + b) or as
columns (``columns``: W @ x + b, Ng's), every sum over the layout's batch axis.  The
reduction's 1/N is inside dL/da (``dz_scale`` "reduced", PyTorch's and CS231n's) or in the
parameter gradients only ("per_sample", Ng's), and the problem says which.  Nothing here
uses the service's code to make an answer.

Then every formula the new diagnoses' messages quote is executed with the student's names
bound, and each fix must compute the right array (as tests/test_diagnosis_messages.py does
for dense layers).
"""

from __future__ import annotations

import ast
import re
from typing import NamedTuple

import numpy as np
import pytest

from schemas import CheckRequestSchema
from service.core.mistakes import plan
from service.core.submission import Submission, Tolerance
from service.grading import Grader
from service.grading.reference import param_scale

BATCH, N_IN, HIDDEN, N_OUT = 5, 3, 4, 2
EPS = 1e-5
KEEP_PROB = 0.6
CONVENTIONS = ("numpy", "torch", "columns")
SNIPPET = re.compile(r"`([^`]+)`")
FIX = re.compile(r" Fix(?: in layer (\d+))?: `([^`]+)`\.$")


class Student(NamedTuple):
    kind: str  # batchnorm, layernorm, dropout
    bug: str
    convention: str
    dz_scale: str  # "reduced" (1/N inside dL/da) or "per_sample" (1/N in dW, db, dgamma, dbeta)
    variance: str = "biased"  # the problem's batchnorm variance

    @property
    def id(self) -> str:
        extra = f"-{self.variance}" if self.kind == "batchnorm" else ""
        return f"{self.kind}-{self.bug}-{self.convention}-{self.dz_scale}{extra}"


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


class Layout:
    """The student's own layout: where the batch axis is, and how an affine layer multiplies."""

    def __init__(self, convention: str):
        self.convention = convention
        self.columns = convention == "columns"
        self.batch_axis = 1 if self.columns else 0
        self.feature_axis = 0 if self.columns else 1

    def data(self, canonical):  # (batch, n) -> the layout's
        return canonical.T if self.columns else canonical

    def weights(self, canonical):  # (n_in, n_out) -> the layout's
        return canonical if self.convention == "numpy" else canonical.T

    def vector(self, values):  # a bias, gamma or beta: flat with rows, (n, 1) with columns
        return values.reshape(-1, 1) if self.columns else values

    def affine(self, x, W, b):
        return {"numpy": lambda: x @ W + b, "torch": lambda: x @ W.T + b}.get(
            self.convention, lambda: W @ x + b
        )()

    def affine_backward(self, dz, x, W, k):
        """(dx, dW, db), the parameter gradients divided by k (Ng's 1/m)."""
        if self.convention == "numpy":
            return dz @ W.T, x.T @ dz / k, dz.sum(axis=0) / k
        if self.convention == "torch":
            return dz @ W, dz.T @ x / k, dz.sum(axis=0) / k
        return W.T @ dz, dz @ x.T / k, dz.sum(axis=1, keepdims=True) / k

    def sum(self, array, axis):
        return array.sum(axis=axis, keepdims=self.columns)


# -- the problem -------------------------------------------------------------------------------


def problem(student: Student):
    """affine -> the layer (relu after a norm) -> affine, sigmoid, mse; and its arrays laid out."""
    L = Layout(student.convention)
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(BATCH, N_IN)), rng.uniform(0.05, 0.95, size=(BATCH, N_OUT))
    W1, b1 = rng.normal(size=(N_IN, HIDDEN)), rng.normal(scale=0.3, size=HIDDEN)
    W2, b2 = rng.normal(scale=0.7, size=(HIDDEN, N_OUT)), rng.normal(scale=0.3, size=N_OUT)
    gamma, beta = 1 + 0.4 * rng.normal(size=HIDDEN), rng.normal(scale=0.5, size=HIDDEN)
    mask = (rng.random((BATCH, HIDDEN)) < KEEP_PROB).astype(float)
    mask[0, 0], mask[1, 0] = 0.0, 1.0  # at least one dropped and one kept
    arrays = {
        "x": L.data(x),
        "y": L.data(y),
        "W1": L.weights(W1),
        "b1": L.vector(b1),
        "W2": L.weights(W2),
        "b2": L.vector(b2),
        "gamma": L.vector(gamma),
        "beta": L.vector(beta),
        "mask": L.data(mask),
    }
    if student.kind == "dropout":
        middle = {"type": "dropout", "keep_prob": KEEP_PROB, "mask": arrays["mask"].tolist()}
        first_activation = "relu"
    else:
        middle = {
            "type": student.kind,
            "gamma": arrays["gamma"].tolist(),
            "beta": arrays["beta"].tolist(),
            "activation": "relu",
        }
        if student.kind == "batchnorm":
            middle["variance"] = student.variance
        first_activation = "identity"
    request = {
        "inputs": arrays["x"].tolist(),
        "targets": arrays["y"].tolist(),
        "layers": [
            {
                "weights": arrays["W1"].tolist(),
                "biases": arrays["b1"].tolist(),
                "activation": first_activation,
            },
            middle,
            {"weights": arrays["W2"].tolist(), "biases": arrays["b2"].tolist()}
            | {"activation": "sigmoid"},
        ],
        "loss": "mse",
        "convention": student.convention,
        "dz_scale": student.dz_scale,
    }
    return request, arrays


# -- the students: CS231n's functions, written out in the layout ---------------------------------


def batchnorm_student(L: Layout, x, gamma, beta, bug: str, ddof: int):
    """CS231n's batchnorm_forward (train) and its staged batchnorm_backward."""
    ax = L.batch_axis
    if bug == "variance_bias_mismatch":
        ddof = 1 - ddof  # np.var where the problem's is ddof=1, or the other way round
    N = x.shape[ax]
    # d var / d x's divisor: the forward's, or the other one (the forward given, right)
    D = N - (1 - ddof if bug == "variance_backward_only" else ddof)
    mu = x.mean(axis=ax, keepdims=True)
    xmu = x - mu
    var = (xmu**2).sum(axis=ax, keepdims=True) / (N - ddof)
    std = np.sqrt(var + EPS)
    xhat = xmu / std
    out = gamma * xhat + beta

    def backward(dout):
        dbeta, dgamma = L.sum(dout, ax), L.sum(dout * xhat, ax)
        if bug == "dgamma_not_reduced":
            dbeta, dgamma = dout, dout * xhat  # one row per sample
        dxhat = dout * gamma
        if bug == "batchnorm_mean_variance_ignored":
            return dxhat / std, dgamma, dbeta
        dvar = np.sum(dxhat * xmu, axis=ax, keepdims=True) * -0.5 * (var + EPS) ** -1.5
        dmu = np.sum(-dxhat / std, axis=ax, keepdims=True)
        dmu += dvar * np.sum(-2 * xmu, axis=ax, keepdims=True) / D
        dx = dxhat / std + dvar * 2 * xmu / D + dmu / N
        return dx, dgamma, dbeta

    return out, backward


def layernorm_student(L: Layout, x, gamma, beta, bug: str, ddof: int = 0):
    """CS231n's layernorm_forward / layernorm_backward: batchnorm's statistics over the
    features; the bug leaves them over the batch (the transpose forgotten)."""
    ax = L.batch_axis if bug == "layernorm_wrong_axis" else L.feature_axis
    D = x.shape[ax]
    mu = x.mean(axis=ax, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=ax, keepdims=True)
    std = np.sqrt(var + EPS)
    xhat = (x - mu) / std
    out = gamma * xhat + beta

    def backward(dout):
        dbeta, dgamma = L.sum(dout, L.batch_axis), L.sum(dout * xhat, L.batch_axis)
        if bug == "dgamma_not_reduced":
            dbeta, dgamma = dout, dout * xhat
        dxhat = dout * gamma
        dx = (
            D * dxhat
            - dxhat.sum(axis=ax, keepdims=True)
            - xhat * (dxhat * xhat).sum(axis=ax, keepdims=True)
        ) / (D * std)
        return dx, dgamma, dbeta

    return out, backward


def dropout_student(mask, x, bug: str):
    """CS231n's dropout_forward / dropout_backward (train, p the keep probability)."""
    p = KEEP_PROB
    scaled = mask if bug == "dropout_not_rescaled_throughout" else mask / p
    out = x * scaled

    def backward(dout):
        return {
            "mask_not_applied_in_backward": lambda: dout / p,
            "mask_not_applied_passed_through": lambda: dout,
            "dropout_not_rescaled": lambda: dout * mask,
        }.get(bug, lambda: dout * scaled)()

    return out, backward


def solve(student: Student, arrays: dict) -> list[dict]:
    """The student's whole network, forward and backward, in their layout."""
    L = Layout(student.convention)
    x, y = arrays["x"], arrays["y"]
    W1, b1, W2, b2 = arrays["W1"], arrays["b1"], arrays["W2"], arrays["b2"]
    per_sample = student.dz_scale == "per_sample"
    z1 = L.affine(x, W1, b1)
    a1 = np.maximum(z1, 0) if student.kind == "dropout" else z1
    if student.kind == "dropout":
        z2, middle_backward = dropout_student(arrays["mask"], a1, student.bug)
        a2 = z2
    else:
        write = {"batchnorm": batchnorm_student, "layernorm": layernorm_student}[student.kind]
        ddof = 1 if student.variance == "unbiased" else 0
        z2, middle_backward = write(L, a1, arrays["gamma"], arrays["beta"], student.bug, ddof)
        a2 = np.maximum(z2, 0)
    z3 = L.affine(a2, W2, b2)
    a3 = sigmoid(z3)

    numel = a3.size  # mse's mean is over every element
    k = numel if per_sample else 1
    dz3 = 2 * (a3 - y) / (1 if per_sample else numel) * a3 * (1 - a3)
    da2, dW2, db2 = L.affine_backward(dz3, a2, W2, k)
    if student.kind == "dropout":
        dz2 = da2
        dx2 = middle_backward(dz2)
        middle = {"z": z2, "dz": dz2, "dx": dx2}
        dz1 = dx2 * (z1 > 0)
    else:
        dz2 = da2 * (z2 > 0)
        dx2, dgamma, dbeta = middle_backward(dz2)
        middle = {"z": z2, "dz": dz2, "dx": dx2, "dgamma": dgamma / k, "dbeta": dbeta / k}
        dz1 = dx2
    _, dW1, db1 = L.affine_backward(dz1, x, W1, k)
    return [{"dz": dz1, "dW": dW1, "db": db1}, middle, {"dz": dz3, "dW": dW2, "db": db2}]


# -- what each field gets ------------------------------------------------------------------------

#: bug -> (the code, the fields it reaches; "all" for a forward mistake)
BUGS = {
    "batchnorm": {
        "dgamma_not_reduced": ("dgamma_not_reduced", ("layers.1.dgamma", "layers.1.dbeta")),
        "batchnorm_mean_variance_ignored": ("batchnorm_mean_variance_ignored", "backward"),
        "variance_bias_mismatch": ("variance_bias_mismatch", "all"),
        "variance_backward_only": ("variance_bias_mismatch", "backward"),
    },
    "layernorm": {
        "dgamma_not_reduced": ("dgamma_not_reduced", ("layers.1.dgamma", "layers.1.dbeta")),
        "layernorm_wrong_axis": ("layernorm_wrong_axis", "all"),
    },
    "dropout": {
        "mask_not_applied_in_backward": ("mask_not_applied_in_backward", "backward"),
        "mask_not_applied_passed_through": ("mask_not_applied_in_backward", "backward"),
        "dropout_not_rescaled": ("dropout_not_rescaled", "backward"),
        "dropout_not_rescaled_throughout": ("dropout_not_rescaled", "all"),
    },
}


def fields(layers: list[dict]) -> list[str]:
    return [f"layers.{i}.{name}" for i, layer in enumerate(layers) for name in layer]


def expected(student: Student, layers: list[dict]) -> dict[str, str]:
    outcome = dict.fromkeys(fields(layers), "passed")
    if student.bug == "none":
        return outcome
    code, reach = BUGS[student.kind][student.bug]
    if reach == "all":
        reached = fields(layers)
    elif reach == "backward":  # layer 1's dx and every field of layer 0
        reached = ["layers.1.dx", *(f for f in outcome if f.startswith("layers.0."))]
    else:
        reached = reach
    outcome |= dict.fromkeys(reached, code)
    if code == "variance_bias_mismatch":
        # a batchnorm's dx sums to 0 over the batch whatever its variance: the dense layer's db
        # below it is 0, right, with either divisor
        outcome["layers.0.db"] = "passed"
    return outcome


STUDENTS = [
    Student(kind, bug, convention, dz_scale, variance)
    for kind, bugs in BUGS.items()
    for bug in ("none", *bugs)
    for convention in CONVENTIONS
    for dz_scale in ("reduced", "per_sample")
    for variance in (("biased", "unbiased") if kind == "batchnorm" else ("biased",))
]


def outcomes(body) -> dict[str, str]:
    return {r["field"]: "passed" if r["passed"] else r["diagnosis"] for r in body["results"]}


@pytest.mark.parametrize("student", STUDENTS, ids=lambda s: s.id)
def test_each_hand_written_layer_student_gets_exactly_the_code_of_their_bug(client, student):
    request, arrays = problem(student)
    layers = solve(student, arrays)
    submission = {"layers": [{k: v.tolist() for k, v in layer.items()} for layer in layers]}
    response = client.post("/v1/check", json=request | {"submission": submission})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert outcomes(body) == expected(student, layers)
    if student.bug == "none":
        assert body["passed"] is True
        assert all(r["diagnosis"] is None for r in body["results"])


# -- every formula of the new messages, executed --------------------------------------------------

CODES = {
    "batchnorm": {
        "dgamma_not_reduced",
        "batchnorm_mean_variance_ignored",
        "variance_bias_mismatch",
    },
    "layernorm": {"dgamma_not_reduced", "layernorm_wrong_axis"},
    "dropout": {"mask_not_applied_in_backward", "dropout_not_rescaled"},
}
SPECS = [
    Student(kind, "none", convention, dz_scale, variance)
    for kind, variance in (
        ("batchnorm", "biased"),
        ("batchnorm", "unbiased"),
        ("layernorm", "biased"),
        ("dropout", "biased"),
    )
    for convention in CONVENTIONS
    for dz_scale in ("reduced", "per_sample")
]


def bound_names(client, request: dict, spec: Student, arrays: dict) -> tuple[dict, dict]:
    """The student's names for layer 1 (the norm or dropout), and the right value of each
    target a fix may assign: dx, dgamma, dbeta."""
    answer = client.post("/v1/gradients", json=request | {"include": ["z", "a", "dz", "dx"]})
    assert answer.status_code == 200, answer.get_json()
    first, middle = (
        {k: np.array(v) for k, v in layer.items()} for layer in answer.get_json()["layers"][:2]
    )
    L = Layout(spec.convention)
    a_prev = first["a"]
    ax = L.feature_axis if spec.kind == "layernorm" else L.batch_axis
    ddof = 1 if spec.kind == "batchnorm" and spec.variance == "unbiased" else 0
    std = np.sqrt(a_prev.var(axis=ax, ddof=ddof, keepdims=True) + EPS)
    names = {
        "np": np,
        "a_prev": a_prev,
        "z": middle["z"],
        "a": middle["a"],
        "dz": middle["dz"],
        "gamma": arrays["gamma"],
        "mask": arrays["mask"],
        "std": std,
        "x_hat": (a_prev - a_prev.mean(axis=ax, keepdims=True)) / std,
    }
    right = {name: middle[name] for name in ("dx", "dgamma", "dbeta") if name in middle}
    return names, right


def new_messages(request: dict, kind: str) -> list[tuple[str, str, str]]:
    """(field, diagnosis, message) of every failure with one of the kind's new codes: each
    mistaken pass submitted whole, and dgamma and dbeta left one row per sample."""
    submission = {"layers": [{"dx": [[0.0]]}, None, None]}  # keeps every dx
    grader = Grader(
        CheckRequestSchema().load(request | {"submission": submission}).gradients, Tolerance()
    )
    own = {"dense": ("dW", "db"), "dropout": ()}.get(kind, ("dgamma", "dbeta"))
    kinds = [layer.kind for layer in grader.request.problem.layers]

    def fields(result, i):
        names = ("z", "a", "dz", "dx", *{"dense": ("dW", "db")}.get(kinds[i], own))
        return {n: grader.value(result, i, n) for n in names}

    submissions = [
        Submission(loss=None, layers=tuple(fields(variant.result, i) for i in range(3)))
        for variant in grader.mistaken_passes()
        if variant.code in CODES[kind]
    ]
    if kind != "dropout":
        dz = grader.reference.layers[1].dz
        x_hat = grader.fwd.caches[1][0]
        scale = param_scale(grader)
        rows = {"dgamma": scale * dz * x_hat, "dbeta": scale * dz}
        laid_out = {n: grader.request.convention.data(v, back=True) for n, v in rows.items()}
        submissions.append(Submission(loss=None, layers=(None, laid_out, None)))
    return [
        (r.field, r.diagnosis, r.message)
        for s in submissions
        for r in grader.grade(s).results
        if r.diagnosis in CODES[kind]
    ]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_every_formula_of_the_layer_messages_runs_and_every_fix_computes_the_right_array(
    client, spec
):
    request, arrays = problem(spec)
    names, right = bound_names(client, request, spec, arrays)
    graded = new_messages(request, spec.kind)
    assert {code for _, code, _ in graded} == CODES[spec.kind]
    failures = []
    for path, code, message in graded:
        match = FIX.search(message)
        if match is None:
            failures.append((path, code, "no fix", message))
            continue
        assert match.group(1) in (None, "1"), message  # every fix is in layer 1, the mistake's
        for snippet in SNIPPET.findall(message):
            try:
                exec(snippet, dict(names))
            except Exception as error:
                failures.append((path, code, f"`{snippet}` raises {error!r}", message))
        statement = match.group(2)
        scope = dict(names)
        exec(statement, scope)
        target = ast.parse(statement).body[-1].targets[0].id
        got, want = np.asarray(scope[target]), right[target]
        if got.shape != want.shape:
            failures.append((path, code, f"`{statement}` has shape {got.shape}, not {want.shape}"))
        elif not np.allclose(got, want, rtol=1e-9, atol=1e-12):
            failures.append((path, code, f"`{statement}` is not the right {target}", message))
    assert failures == []


# -- eval mode: dx = dout * gamma / std is the right answer there --------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_in_eval_mode_dx_as_dout_times_gamma_over_std_passes_with_no_diagnosis(client, convention):
    """CS231n's batchnorm in test mode: the running statistics are constants, so the student
    who writes dx = dout * gamma / std is right, and no train-mode mistake is tried."""
    spec = Student("batchnorm", "none", convention, "reduced")
    request, arrays = problem(spec)
    L = Layout(convention)
    rng = np.random.default_rng(5)
    running_mean, running_var = rng.normal(size=HIDDEN), rng.uniform(0.5, 2.0, size=HIDDEN)
    request["layers"][1] |= {
        "mode": "eval",
        "running_mean": L.vector(running_mean).tolist(),
        "running_var": L.vector(running_var).tolist(),
    }
    del request["layers"][1]["variance"]
    x, y, W1, b1, W2, b2 = (arrays[k] for k in ("x", "y", "W1", "b1", "W2", "b2"))
    gamma, beta = arrays["gamma"], arrays["beta"]
    z1 = L.affine(x, W1, b1)
    std = np.sqrt(L.vector(running_var) + EPS)
    xhat = (z1 - L.vector(running_mean)) / std
    z2 = gamma * xhat + beta
    a2 = np.maximum(z2, 0)
    a3 = sigmoid(L.affine(a2, W2, b2))
    dz3 = 2 * (a3 - y) / a3.size * a3 * (1 - a3)
    da2, dW2, db2 = L.affine_backward(dz3, a2, W2, 1)
    dz2 = da2 * (z2 > 0)
    dx2 = dz2 * gamma / std  # batchnorm_mean_variance_ignored's formula: right in eval mode
    _, dW1, db1 = L.affine_backward(dx2, x, W1, 1)
    ax = L.batch_axis
    layers = [
        {"dz": dx2, "dW": dW1, "db": db1},
        {"z": z2, "dz": dz2, "dx": dx2, "dgamma": L.sum(dz2 * xhat, ax), "dbeta": L.sum(dz2, ax)},
        {"dz": dz3, "dW": dW2, "db": db2},
    ]
    submission = {"layers": [{k: v.tolist() for k, v in layer.items()} for layer in layers]}
    response = client.post("/v1/check", json=request | {"submission": submission})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["passed"] is True
    assert [r["diagnosis"] for r in body["results"]] == [None] * 11

    parsed = CheckRequestSchema().load(request | {"submission": submission}).gradients.problem
    tried = {p.code for p in plan(parsed)}
    assert not tried & {"batchnorm_mean_variance_ignored", "variance_bias_mismatch"}


def test_a_dropout_layer_keeping_everything_has_no_dropout_mistake_to_try():
    """keep_prob 1: every form of the mistakes gives the right numbers; none is recomputed."""
    request, _ = problem(Student("dropout", "none", "numpy", "reduced"))
    request["layers"][1] |= {"keep_prob": 1.0, "mask": np.ones((BATCH, HIDDEN)).tolist()}
    request["submission"] = {"layers": [None, {"dx": [[0.0]]}, None]}
    parsed = CheckRequestSchema().load(request).gradients.problem
    assert not {p.code for p in plan(parsed)} & CODES["dropout"]
