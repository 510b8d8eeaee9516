"""Every formula in every diagnosis message is NumPy that, pasted, computes the right thing
(issue 13, items 2 and 3).

For a spread of problems (three conventions and their bias shapes, every loss, class
labels, both dz_scale placements, l2) every message the grader can give is produced: each
mistaken pass of the catalogue submitted whole, every shape mistake, unexplained values.
Each backticked statement of a message must run with the student's names bound (a_prev, W,
b, z, a, y, da, dh, dz); the fix (``Fix: `...` `` or ``Fix in layer k: `...` ``) must
compute the right array of that layer, in exactly the right shape.  The right arrays come
from the service's /v1/gradients answer, which the oracle tests hold to PyTorch.
"""

from __future__ import annotations

import ast
import re
from itertools import product
from typing import NamedTuple

import numpy as np
import pytest

from schemas import CheckRequestSchema
from service.core.submission import Submission, Tolerance
from service.grading import Grader
from service.grading.reference import l2_term, param_scale

SNIPPET = re.compile(r"`([^`]+)`")
FIX = re.compile(r" Fix(?: in layer (\d+))?: `([^`]+)`\.$")


class Spec(NamedTuple):
    convention: str
    bias: str  # flat (n,), row (1, n), column (n, 1)
    hidden: str
    output: str
    loss: str
    reduction: str
    dz_scale: str
    labels: bool = False
    l2: float = 0.0
    sizes: tuple[int, ...] = (3, 4, 3)

    @property
    def id(self) -> str:
        extra = "-labels" if self.labels else ""
        extra += f"-l2={self.l2}" if self.l2 else ""
        extra += "-" + "x".join(map(str, self.sizes)) if self.sizes != (3, 4, 3) else ""
        return (
            f"{self.convention}-{self.bias}-{self.hidden}-{self.output}-{self.loss}-"
            f"{self.reduction}-{self.dz_scale}{extra}"
        )


LAYOUTS = (("numpy", "flat"), ("torch", "row"), ("columns", "column"), ("numpy", "row"))
OUTPUTS = (
    ("sigmoid", "mse", "mean", False),
    ("tanh", "half_mse", "sum", False),
    ("sigmoid", "bce", "mean", False),
    ("softmax", "cross_entropy", "mean", True),
    ("softmax", "cross_entropy", "mean", False),
    ("identity", "hinge", "mean", False),
    ("identity", "svm", "mean", True),
    ("identity", "svm", "sum", False),  # one-hot targets
)
SPECS = [
    Spec(convention, bias, hidden, output, loss, reduction, dz_scale, labels)
    for (convention, bias), (output, loss, reduction, labels), hidden, dz_scale in product(
        LAYOUTS, OUTPUTS, ("tanh", "sigmoid", "relu"), ("reduced", "per_sample")
    )
] + [
    Spec("torch", "row", "tanh", "sigmoid", "mse", "mean", "per_sample", l2=0.1),
    # the svm on an activation's output: its gradient is da, then the chain rule
    Spec("numpy", "flat", "tanh", "sigmoid", "svm", "mean", "reduced", labels=True),
    Spec("columns", "column", "relu", "tanh", "svm", "mean", "per_sample", labels=True),
    # a square layer and a one-unit output: dA_prev = dZ runs, missing_weights_in_chain
    *(
        Spec(convention, bias, "tanh", "sigmoid", "mse", "mean", dz_scale, sizes=(3, 3, 1))
        for (convention, bias), dz_scale in product(LAYOUTS, ("reduced", "per_sample"))
    ),
]


def problem(spec: Spec, batch: int = 5) -> dict:
    sizes = spec.sizes
    rng = np.random.default_rng(abs(hash(spec.id)) % 2**32)
    columns = spec.convention == "columns"
    x = rng.normal(size=(batch, sizes[0]))
    if spec.labels:
        y = rng.integers(0, sizes[-1], size=batch)
    elif spec.loss == "hinge":
        y = 2.0 * rng.integers(0, 2, size=(batch, sizes[-1])) - 1
    elif spec.loss in ("cross_entropy", "svm"):
        y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], size=batch)]
    else:
        y = rng.uniform(0.05, 0.95, size=(batch, sizes[-1]))
    layers = []
    for n_in, n_out, activation in zip(sizes, sizes[1:], (spec.hidden, spec.output)):
        W = rng.normal(scale=1.2 / np.sqrt(n_in), size=(n_in, n_out))
        b = rng.normal(scale=0.3, size=n_out)
        shape = {"flat": (-1,), "row": (1, -1), "column": (-1, 1)}[spec.bias]
        weights = W if spec.convention == "numpy" else W.T
        layers.append({"weights": weights.tolist(), "biases": b.reshape(shape).tolist()})
        layers[-1]["activation"] = activation
    return {
        "inputs": (x.T if columns else x).tolist(),
        "targets": (y.T if columns and y.ndim == 2 else y).tolist(),
        "layers": layers,
        "loss": spec.loss,
        "reduction": spec.reduction,
        "convention": spec.convention,
        "dz_scale": spec.dz_scale,
        "l2": spec.l2,
    }


def svm_da(a: np.ndarray, labels: np.ndarray, columns: bool) -> np.ndarray:
    """The svm's unreduced dL/d(scores), CS231n's loop: for each sample and each class
    j != y whose margin s_j - s_y + 1 is positive, +1 at j and -1 at y."""
    scores = a.T if columns else a
    grad = np.zeros_like(scores)
    for i, label in enumerate(labels.ravel()):
        for j in range(scores.shape[1]):
            if j != label and scores[i, j] - scores[i, label] + 1 > 0:
                grad[i, j] += 1
                grad[i, label] -= 1
    return grad.T if columns else grad


def output_da(spec: Spec, a: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """dL/da at the output, written out here, in the client's layout and dz_scale."""
    if spec.loss == "svm":
        columns = spec.convention == "columns"
        labels = y if spec.labels else y.argmax(axis=0 if columns else 1)
        da = svm_da(a, labels, columns)
        return da if spec.dz_scale == "per_sample" else da / n
    if spec.labels:
        columns = spec.convention == "columns"
        one_hot = np.eye(a.shape[0] if columns else a.shape[1])[y.ravel()]
        y = one_hot.T if columns else one_hot
    da = {
        "mse": lambda: 2 * (a - y),
        "half_mse": lambda: a - y,
        "bce": lambda: (a - y) / (a * (1 - a)),
        "cross_entropy": lambda: -y / a,
        "hinge": lambda: np.where(1 - y * a > 0, -y, 0.0),
    }[spec.loss]()
    return da if spec.dz_scale == "per_sample" else da / n


class Names:
    """The names a student's code has, per layer, and the right value of each array."""

    def __init__(self, client, body: dict, spec: Spec):
        answer = client.post("/v1/gradients", json=body | {"include": ["z", "a", "dz", "dx"]})
        assert answer.status_code == 200, answer.get_json()
        self.answer = answer.get_json()
        self.body, self.spec = body, spec
        self.layers = [{k: np.array(v) for k, v in L.items()} for L in self.answer["layers"]]
        y = np.array(body["targets"])
        self.y = y.astype(np.int64) if spec.labels else y
        x = np.array(body["inputs"])
        columns = spec.convention == "columns"
        n_out = self.layers[-1]["a"].shape[0 if columns else 1]
        batch = x.shape[1 if columns else 0]
        mean_over = batch if spec.loss in ("cross_entropy", "svm") else batch * n_out
        self.n = mean_over if spec.reduction == "mean" else 1
        self.x = x

    def of(self, k: int) -> tuple[dict, dict]:
        """(the names bound in layer k, the right value of each target name)."""
        layer, sent = self.layers[k], self.body["layers"][k]
        last = len(self.layers) - 1
        if k == last:
            da = output_da(self.spec, layer["a"], self.y, self.n)
        else:
            da = self.layers[k + 1]["dx"]
        names = {
            "np": np,
            "a_prev": self.x if k == 0 else self.layers[k - 1]["a"],
            "W": np.array(sent["weights"]),
            "b": np.array(sent["biases"]),
            "z": layer["z"],
            "a": layer["a"],
            "y": self.y,
            "da": da,
            "dh": da,
            "dz": layer["dz"],
        }
        right = {name: layer[name] for name in ("z", "a", "dz", "dW", "db", "dx")}
        right |= {"da": da, "dh": da, "loss": np.float64(self.answer["loss"])}
        return names, right


def messages(body: dict) -> list[tuple[str, int, str, str]]:
    """(field, its layer, diagnosis, message) of every failure the grader gives for this
    problem: each mistaken pass submitted whole, the shape mistakes, unexplained values."""
    submission = {"loss": 0.0, "layers": [{"dx": [[0.0]]}, None]}  # keeps every dx
    request = CheckRequestSchema().load(body | {"submission": submission})
    grader = Grader(request.gradients, Tolerance(), reveal=False)
    reference = grader.reference
    names = ("z", "a", "dz", "dx", "dW", "db")
    submissions = []
    for variant in grader.mistaken_passes():
        layers = tuple({n: grader.value(variant.result, i, n) for n in names} for i in range(2))
        submissions.append(Submission(loss=variant.result.loss, layers=layers))
    right = [{n: grader.value(reference, i, n) for n in names} for i in range(2)]
    rng = np.random.default_rng(0)
    broken = []
    for i, layer in enumerate(right):
        dW, db, dz = layer["dW"], layer["db"], layer["dz"]
        broken.append(
            (
                i,
                {
                    "dW": dW.T,  # transposed
                    "db": dz,  # not reduced over the batch
                    "z": layer["z"] + 0.1 * rng.normal(size=layer["z"].shape),  # unexplained
                    "a": layer["a"] + 0.1,
                    "dz": dz * 1.37 + 0.01,
                    "dx": layer["dx"] * 1.37 + 0.01,
                },
            )
        )
        # every gradient of the layer half the right one (a constant on the output's gradient)
        broken.append((i, {n: 0.5 * layer[n] for n in ("dz", "dx", "dW", "db")}))
        units = 0 if grader.c.samples_are_columns else 1
        per_sample = grader.request.problem.dz_scale == "per_sample"
        scale = param_scale(grader) if per_sample else 1.0
        broken.append((i, {"db": scale * dz.sum(axis=units)}))  # summed over the units
        n_in = grader.request.problem.inputs.shape[1]
        other = [out for out in grader.fwd.outs if out.shape[1] == n_in]
        if i == 0 and other:  # an activation of the inputs' width: dW from the wrong layer
            wrong = scale * (other[0].T @ reference.layers[0].dz)
            l2 = l2_term(grader, 0)
            wrong = grader.request.to_client(wrong, grader.request.layouts[0]["dW"])
            broken.append((0, {"dW": wrong if l2 is None else wrong + l2}))
        if db.ndim == 2 and db.shape[0] == 1:
            broken.append((i, {"db": db.reshape(-1, 1)}))  # a column in a rows convention
        if db.ndim == 2 and db.shape[1] == 1:
            broken.append((i, {"db": db.reshape(-1)}))  # flat in columns
    for i, fields in broken:
        layers = [None, None]
        layers[i] = fields
        submissions.append(Submission(loss=reference.loss * 1.37, layers=tuple(layers)))
    found = []
    for submission in submissions:
        for result in grader.grade(submission).results:
            if not result.passed:
                layer = -1 if result.field == "loss" else int(result.field.split(".")[1])
                found.append((result.field, layer, result.diagnosis, result.message))
    return found


def last_target(statement: str) -> str:
    target = ast.parse(statement).body[-1].targets[0]
    return target.id


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_every_formula_in_every_message_runs_and_every_fix_computes_the_right_array(client, spec):
    body = problem(spec)
    names = Names(client, body, spec)
    last = len(body["layers"]) - 1
    graded = messages(body)
    codes = {code for *_, code, _ in graded}
    assert {
        "transposed",
        "not_reduced_over_batch",
        "wrong_values",
        "summed_over_wrong_axis",
        "wrong_layer_input",
        "scaled_by_constant",
    } <= codes
    if spec.labels and spec.loss == "cross_entropy":
        assert "labels_not_one_hot" in codes
    if spec.loss == "svm":
        assert "margin_counted_for_correct_class" in codes
        margin = [m for *_, code, m in graded if code == "margin_counted_for_correct_class"]
        assert all(FIX.search(m) for m in margin)  # evaluated below, as every fix
    assert not [m for *_, m in graded if "layer -1" in m]  # the loss is no layer
    if spec.loss == "mse" and spec.sizes[-1] > 1:
        assert "reduced_over_batch_only" in codes
    if spec.sizes == (3, 3, 1):
        assert "missing_weights_in_chain" in codes
    failures = []
    for path, layer, code, message in graded:
        match = FIX.search(message)
        no_formula = path == "loss" and spec.l2
        if match is None:
            if not no_formula:
                failures.append((path, code, "no fix", message))
            continue
        k = int(match.group(1)) if match.group(1) else (last if layer < 0 else layer)
        bound, right = names.of(k)
        for snippet in SNIPPET.findall(message):
            try:
                with np.errstate(all="ignore"):
                    exec(snippet, dict(bound))
            except Exception as error:
                failures.append((path, code, f"`{snippet}` raises {error!r}", message))
        statement = match.group(2)
        scope = dict(bound)
        exec(statement, scope)
        target = last_target(statement)
        got, want = np.asarray(scope[target]), np.asarray(right[target])
        if got.shape != want.shape:
            failures.append((path, code, f"`{statement}` has shape {got.shape}, not {want.shape}"))
        elif not np.allclose(got, want, rtol=1e-9, atol=1e-12):
            failures.append((path, code, f"`{statement}` is not the right {target}", message))
    assert failures == []


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_the_tanh_and_sigmoid_formulas_are_parenthesised_as_numpy_reads_them(client, activation):
    spec = Spec("numpy", "flat", activation, "sigmoid", "half_mse", "sum", "reduced")
    graded = messages(problem(spec))
    quoted = {s for *_, message in graded for s in SNIPPET.findall(message)}
    assert "dz = da * 1 - a**2" not in " ".join(quoted)
    if activation == "tanh":
        assert "dz = da * (1 - a**2)" in quoted
        assert "dz = da * (1 - z**2)" in quoted  # the mistake, as the student wrote it
    else:
        assert "dz = da * a * (1 - a)" in quoted


@pytest.mark.parametrize(
    ("bias", "fix"),
    [
        ("flat", "db = np.sum(dz, axis=0)"),
        ("row", "db = np.sum(dz, axis=0, keepdims=True)"),
    ],
)
def test_the_db_fix_for_a_flat_bias_has_no_keepdims(client, bias, fix):
    spec = Spec("numpy", bias, "tanh", "sigmoid", "mse", "mean", "reduced")
    graded = messages(problem(spec))
    db = [m for path, _, code, m in graded if code == "not_reduced_over_batch"]
    assert db and all(m.endswith(f"Fix: `{fix}`.") for m in db)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_the_right_answer_in_every_field_gets_no_diagnosis(spec):
    body = problem(spec)
    submission = {"loss": 0.0, "layers": [{"dx": [[0.0]]}, None]}
    grader = Grader(
        CheckRequestSchema().load(body | {"submission": submission}).gradients, Tolerance()
    )
    names = ("z", "a", "dz", "dx", "dW", "db")
    layers = tuple({n: grader.value(grader.reference, i, n) for n in names} for i in range(2))
    report = grader.grade(Submission(loss=grader.reference.loss, layers=layers))
    assert report.passed and report.checked == 13
    assert [r.diagnosis for r in report.results] == [None] * 13


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("convention", ["numpy", "torch", "columns"])
@pytest.mark.parametrize("dz_scale", ["reduced", "per_sample"])
def test_with_a_norm_layer_every_quoted_formula_parses_and_the_right_answer_passes(
    norm, convention, dz_scale
):
    """The layer kinds of issue 14 under the grader: a norm's z and dx have no one-line NumPy
    (the message says them in words); every backticked statement still parses, dense layers
    keep their evaluated fixes (above), and the right answer gets no diagnosis."""
    from tests.test_norm_layers import norm_network

    body = norm_network(4, convention, "flat" if convention != "columns" else "column", norm)
    body = {k: v for k, v in body.items() if k != "include"} | {"dz_scale": dz_scale}
    body["layers"][1]["activation"] = "sigmoid"  # sigmoid brings in the whole catalogue
    submission = {"loss": 0.0, "layers": [{"dx": [[0.0]]}, None, None]}
    grader = Grader(
        CheckRequestSchema().load(body | {"submission": submission}).gradients, Tolerance()
    )
    names = ("z", "a", "dz", "dx", "dW", "db", "dgamma", "dbeta")
    kinds = [layer.kind for layer in grader.request.problem.layers]

    def fields(result, i):
        has = {"dense": ("dW", "db"), "batchnorm": ("dgamma", "dbeta")}.get(
            kinds[i], ("dgamma", "dbeta")
        )
        return {n: grader.value(result, i, n) for n in names if n in ("z", "a", "dz", "dx", *has)}

    right = tuple(fields(grader.reference, i) for i in range(3))
    assert grader.grade(Submission(loss=grader.reference.loss, layers=right)).passed
    graded = []
    for variant in grader.mistaken_passes():
        layers = tuple(fields(variant.result, i) for i in range(3))
        graded += grader.grade(Submission(loss=variant.result.loss, layers=layers)).results
    noisy = tuple({n: v * 1.37 + 0.01 for n, v in layer.items()} for layer in right)
    graded += grader.grade(Submission(loss=None, layers=noisy)).results
    codes = {r.diagnosis for r in graded if not r.passed}
    assert {"derivative_of_error", "wrong_values"} <= codes
    for result in graded:
        for snippet in SNIPPET.findall(result.message):
            ast.parse(snippet)
        if result.field in ("layers.1.z", "layers.1.dx") and result.diagnosis == "wrong_values":
            assert "`" not in result.message  # a norm's formulas are words, not code
