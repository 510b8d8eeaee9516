"""POST /v1/check: the autograder grades a student's backprop field by field and names each mistake.

Every student submission in this file is computed here, by hand, in NumPy: a forward
pass and a backward pass written the way a student writes them in their own convention
(numpy, torch or columns), with the mistake made on purpose.  The service's own code is
never used to produce a wrong answer; the right answer also comes from the hand-written
network, checked against the service at 1e-9.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from itertools import pairwise, product

import numpy as np
import pytest

# -- a hand-written network, in the student's own convention ---------------------------------

#: name -> (layer sizes, activations); every output is a sigmoid, so bce is always possible
NETWORKS = {
    "2-layer-sigmoid": ((3, 4, 2), ("sigmoid", "sigmoid")),
    "2-layer-tanh": ((2, 3, 1), ("tanh", "sigmoid")),
    "3-layer-tanh-sigmoid": ((3, 4, 4, 2), ("tanh", "sigmoid", "sigmoid")),
    "3-layer-sigmoid-tanh": ((2, 3, 3, 1), ("sigmoid", "tanh", "sigmoid")),
}
CONVENTIONS = ("numpy", "torch", "columns")
#: (loss, reduction): a sum, a mean over every element, and bce with its sigmoid output
LOSSES = (("half_mse", "sum"), ("mse", "mean"), ("bce", "mean"))
#: the bias shape each convention's problems are written in (the bias tests try the others)
BIAS_FORM = {"numpy": "flat", "torch": "row", "columns": "column"}
FIELDS = ("z", "a", "dz", "dW", "db")
BACKWARD_FIELDS = ("dz", "dW", "db")
#: the bias gradient's fix in each bias shape: keepdims only where the bias is 2-D
DB_FIX = {
    "flat": "db = np.sum(dz, axis=0)",
    "row": "db = np.sum(dz, axis=0, keepdims=True)",
    "column": "db = np.sum(dz, axis=1, keepdims=True)",
}
DW_FORMULA = {"numpy": "a_prev.T @ dz", "torch": "dz.T @ a_prev", "columns": "dz @ a_prev.T"}


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def activate(activation, z):
    return sigmoid(z) if activation == "sigmoid" else np.tanh(z)


def derivative(activation, a):
    """f'(z), written from the activation a = f(z): a (1 - a) for sigmoid, 1 - a**2 for tanh."""
    return a * (1 - a) if activation == "sigmoid" else 1 - a**2


@dataclass(frozen=True)
class Case:
    network: str
    convention: str
    loss: str
    reduction: str
    batch: int
    bias_form: str = ""

    @property
    def id(self) -> str:
        form = f"-{self.bias_form}-bias" if self.bias_form else ""
        return (
            f"{self.network}-{self.convention}-{self.loss}-{self.reduction}-batch{self.batch}{form}"
        )


@dataclass
class Answer:
    loss: float
    #: per layer: z, a, dz, dW, db in the client's layout (db in the problem's bias shape)
    layers: list[dict[str, np.ndarray]]


@dataclass
class Network:
    """Inputs, targets and layers in the client's layout, and the student's maths on them."""

    case: Case
    x: np.ndarray = field(init=False)
    y: np.ndarray = field(init=False)
    weights: list[np.ndarray] = field(init=False, default_factory=list)
    biases: list[np.ndarray] = field(init=False, default_factory=list)

    def __post_init__(self):
        case = self.case
        sizes, self.activations = NETWORKS[case.network]
        rng = np.random.default_rng(zlib.crc32(case.id.encode()))
        x = rng.normal(size=(case.batch, sizes[0]))
        y = rng.uniform(0.05, 0.95, size=(case.batch, sizes[-1]))
        self.x, self.y = (x.T, y.T) if self.columns else (x, y)
        form = case.bias_form or BIAS_FORM[case.convention]
        for n_in, n_out in pairwise(sizes):
            w = rng.normal(scale=1.3 / np.sqrt(n_in), size=(n_in, n_out))  # (n_in, n_out)
            b = rng.normal(scale=0.3, size=n_out)
            self.weights.append(w if case.convention == "numpy" else w.T)
            self.biases.append(b.reshape({"flat": (-1,), "row": (1, -1), "column": (-1, 1)}[form]))

    @property
    def columns(self) -> bool:
        return self.case.convention == "columns"

    @property
    def batch(self) -> int:
        return self.x.shape[1] if self.columns else self.x.shape[0]

    @property
    def mean_scale(self) -> float:
        """What the 'mean' reduction divides by: every element (batch * n_out), as PyTorch does."""
        return 1.0 / self.y.size

    @property
    def scale(self) -> float:
        return self.mean_scale if self.case.reduction == "mean" else 1.0

    # the three conventions, as their students write them

    def linear(self, a_prev, W, b):
        return {
            "numpy": lambda: a_prev @ W + b,
            "torch": lambda: a_prev @ W.T + b,
            "columns": lambda: W @ a_prev + b,
        }[self.case.convention]()

    def dW(self, a_prev, dz):
        return {
            "numpy": lambda: a_prev.T @ dz,
            "torch": lambda: dz.T @ a_prev,
            "columns": lambda: dz @ a_prev.T,
        }[self.case.convention]()

    def db(self, dz, i):
        axis = 1 if self.columns else 0
        return np.sum(dz, axis=axis, keepdims=True).reshape(self.biases[i].shape)

    def da_prev(self, dz, W):
        return {
            "numpy": lambda: dz @ W.T,
            "torch": lambda: dz @ W,
            "columns": lambda: W.T @ dz,
        }[self.case.convention]()

    # forward and backward

    def forward(self):
        zs, hs, h = [], [], self.x
        for W, b, activation in zip(self.weights, self.biases, self.activations):
            z = self.linear(h, W, b)
            h = activate(activation, z)
            zs.append(z)
            hs.append(h)
        return zs, hs

    def loss_value(self, h, scale):
        y = self.y
        total = {
            "half_mse": lambda: 0.5 * np.sum((h - y) ** 2),
            "mse": lambda: np.sum((h - y) ** 2),
            "bce": lambda: -np.sum(y * np.log(h) + (1 - y) * np.log(1 - h)),
        }[self.case.loss]()
        return float(scale * total)

    def dL_dh(self, error, h):
        """dL/da of the unreduced loss at the output, given the error a - y."""
        return {
            "half_mse": lambda: error,
            "mse": lambda: 2 * error,
            "bce": lambda: error / (h * (1 - h)),
        }[self.case.loss]()

    def answer(
        self,
        *,
        rule=None,
        wrong_in=(),
        output_dz=None,
        scale=None,
        flip=False,
    ) -> Answer:
        """The backward pass; by default the right one.

        rule(activation, dh, z, h) -> dz replaces the chain rule in the layers ``wrong_in``;
        output_dz replaces the output layer's dz outright; scale replaces the reduction's
        1/N; flip writes the output error as y - a.
        """
        scale = self.scale if scale is None else scale
        zs, hs = self.forward()
        last = len(self.weights) - 1
        h, y = hs[last], self.y
        error = (y - h) if flip else (h - y)
        dh = scale * self.dL_dh(error, h)
        if output_dz is not None:
            dz = output_dz
        elif last in wrong_in:
            dz = rule(self.activations[last], dh, zs[last], h)
        elif self.case.loss == "bce":
            dz = scale * error  # sigmoid and bce together: dL/dz = a - y
        else:
            dz = dh * derivative(self.activations[last], h)

        layers: list[dict] = [{} for _ in self.weights]
        for i in range(last, -1, -1):
            a_prev = hs[i - 1] if i > 0 else self.x
            layers[i] = {
                "z": zs[i],
                "a": hs[i],
                "dz": dz,
                "dW": self.dW(a_prev, dz),
                "db": self.db(dz, i),
            }
            if i > 0:
                dh = self.da_prev(dz, self.weights[i])
                if i - 1 in wrong_in:
                    dz = rule(self.activations[i - 1], dh, zs[i - 1], hs[i - 1])
                else:
                    dz = dh * derivative(self.activations[i - 1], hs[i - 1])
        return Answer(loss=self.loss_value(h, scale), layers=layers)

    def problem(self) -> dict:
        return {
            "inputs": self.x.tolist(),
            "targets": self.y.tolist(),
            "layers": [
                {"weights": W.tolist(), "biases": b.tolist(), "activation": activation}
                for W, b, activation in zip(self.weights, self.biases, self.activations)
            ],
            "loss": self.case.loss,
            "reduction": self.case.reduction,
            "convention": self.case.convention,
        }


# -- the students' mistaken chain rules ------------------------------------------------------


def preactivation_derivative(activation, dh, z, h):
    """The derivative formula meant for a, evaluated at z."""
    if activation == "sigmoid":
        return dh * (z * (1 - z))  # sigmoid'(z) written as z * (1 - z)
    return dh * (1 - z**2)  # tanh'(z) written as 1 - z**2


def missing_derivative(activation, dh, z, h):
    return dh  # dz = dL/da: f'(z) forgotten


def seed_bug_output_dz(net: Network):
    """The seed bug at a sigmoid output: the derivative formula applied to the error."""
    _, hs = net.forward()
    h2, y = hs[-1], net.y
    dh2 = h2 - y
    dz2 = dh2 * (1 - dh2)
    return dz2


# -- talking to the service ------------------------------------------------------------------


def as_lists(layers, fields=FIELDS):
    return [
        None if layer is None else {name: np.asarray(layer[name]).tolist() for name in fields}
        for layer in layers
    ]


def check(client, net: Network, layers, *, loss=None, fields=FIELDS, **options) -> dict:
    submission = {"layers": as_lists(layers, fields)}
    if loss is not None:
        submission["loss"] = loss
    response = client.post("/v1/check", json={**net.problem(), "submission": submission, **options})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def outcomes(body) -> dict[str, str]:
    """field -> 'passed' or the diagnosis of its failure."""
    return {r["field"]: "passed" if r["passed"] else r["diagnosis"] for r in body["results"]}


def by_field(body) -> dict[str, dict]:
    return {r["field"]: r for r in body["results"]}


def differences(received: dict, expected: dict) -> list[tuple]:
    """(case, field, expected, received) for every field whose outcome is not the expected one,
    over maps {case: {field: outcome}}: a failure lists exactly what was misdiagnosed."""
    found = []
    for key in sorted(expected.keys() | received.keys(), key=str):
        got, want = received.get(key, {}), expected.get(key, {})
        for name in [*want, *(name for name in got if name not in want)]:
            if got.get(name) != want.get(name):
                found.append((key, name, want.get(name, "absent"), got.get(name, "absent")))
    return found


def assert_outcomes(received: dict, expected: dict) -> None:
    wrong = differences(received, expected)
    assert not wrong, "misdiagnosed:\n" + "\n".join(
        f"  {case}: {name} expected {want}, got {got}" for case, name, want, got in wrong
    )


def expected_outcomes(n_layers, code, deepest, *, loss=None, fields=FIELDS) -> dict[str, str]:
    """A mistake made in layer ``deepest`` (or earlier) reaches dz, dW and db of it and every
    layer before it; z and a (forward quantities) and later layers are untouched."""
    expected = {} if loss is None else {"loss": loss}
    for i in range(n_layers):
        for name in fields:
            wrong = name in BACKWARD_FIELDS and i <= deepest
            expected[f"layers.{i}.{name}"] = code if wrong else "passed"
    return expected


#: batch 1 is special (one row, or one column, per array): every setting runs at 1 and at 5
BATCHES = (1, 5)


@dataclass(frozen=True)
class Setting:
    """A network in a convention; each test runs it with several losses and batch sizes."""

    network: str
    convention: str
    losses: tuple[tuple[str, str], ...] = LOSSES

    @property
    def id(self) -> str:
        return f"{self.network}-{self.convention}"

    @property
    def n_layers(self) -> int:
        return len(NETWORKS[self.network][1])

    @property
    def n_out(self) -> int:
        return NETWORKS[self.network][0][-1]

    def runs(self, batches=BATCHES):
        """(name, network) for every loss and batch size, e.g. ("mse-mean-batch5", ...)."""
        for (loss, reduction), batch in product(self.losses, batches):
            case = Case(self.network, self.convention, loss, reduction, batch)
            yield f"{loss}-{reduction}-batch{batch}", Network(case)


def settings(losses=LOSSES, conventions=CONVENTIONS, networks=NETWORKS):
    return [
        pytest.param(s, id=s.id)
        for s in (
            Setting(network, convention, tuple(losses))
            for network, convention in product(networks, conventions)
        )
    ]


def scopes(n_layers):
    """One layer at a time, then every layer at once."""
    return [(i,) for i in range(n_layers)] + [tuple(range(n_layers))]


def scope_name(scope, n_layers):
    return "every layer" if len(scope) == n_layers > 1 else f"layer {scope[0]}"


# -- the hand-written reference is right ---------------------------------------------------


@pytest.mark.parametrize("setting", settings())
def test_the_hand_written_reference_agrees_with_the_service_and_passes(client, setting):
    for key, net in setting.runs():
        right = net.answer()
        body = check(client, net, right.layers, loss=right.loss, reveal=True)

        assert outcomes(body) == expected_outcomes(setting.n_layers, "passed", -1, loss="passed")
        assert body["passed"] is True
        results = by_field(body)
        assert results["loss"]["expected"] == pytest.approx(right.loss, rel=1e-9)
        for i, layer in enumerate(right.layers):
            for name in FIELDS:
                np.testing.assert_allclose(
                    results[f"layers.{i}.{name}"]["expected"],
                    layer[name],
                    rtol=1e-9,
                    atol=1e-12,
                    err_msg=f"{key}, layers.{i}.{name}",
                )


# -- value mistakes, made in the backward pass ------------------------------------------------


@pytest.mark.parametrize("setting", settings())
def test_output_error_written_y_minus_a_is_diagnosed_as_sign_flipped_in_every_layer(
    client, setting
):
    last = setting.n_layers - 1
    received, expected, unhelpful = {}, {}, []
    for key, net in setting.runs():
        body = check(client, net, net.answer(flip=True).layers, loss=net.answer().loss)
        received[key] = outcomes(body)
        expected[key] = expected_outcomes(setting.n_layers, "sign_flipped", last, loss="passed")
        unhelpful += [r["message"] for r in body["results"][1:] if "y - a" not in r["message"]]
    assert_outcomes(received, expected)
    assert [m for m in unhelpful if m != "Correct."] == []


@pytest.mark.parametrize("setting", settings(losses=[("half_mse", "sum"), ("bce", "sum")]))
def test_gradient_averaged_when_the_reduction_is_sum_is_diagnosed(client, setting):
    code = "averaged_instead_of_summed"
    last = setting.n_layers - 1
    received, expected, unhelpful = {}, {}, []
    for (key, net), divisor in product(setting.runs(), ("batch", "batch*n_out")):
        n = net.batch if divisor == "batch" else net.batch * setting.n_out
        # Dividing by 1 changes nothing (the batch divisor at batch 1; batch * n_out too with
        # one output unit): the "wrong" gradient is the right one, there is nothing to see.
        # With one output unit both divisors are the batch: one of them is enough.
        if n == 1 or (divisor == "batch*n_out" and setting.n_out == 1):
            continue
        wrong = net.answer(scale=1.0 / n)
        body = check(client, net, wrong.layers, loss=wrong.loss)
        received[key, divisor] = outcomes(body)
        expected[key, divisor] = expected_outcomes(setting.n_layers, code, last, loss=code)
        message = by_field(body)["layers.0.dW"]["message"]
        if f"divided by {n}" not in message:
            unhelpful.append(message)
    assert_outcomes(received, expected)
    assert unhelpful == []


@pytest.mark.parametrize(
    "setting", settings(losses=[("half_mse", "mean"), ("mse", "mean"), ("bce", "mean")])
)
def test_gradient_summed_when_the_reduction_is_mean_is_diagnosed(client, setting):
    code = "summed_instead_of_averaged"
    last = setting.n_layers - 1
    received, expected = {}, {}
    for key, net in setting.runs():
        # At batch 1 with one output unit the mean divides by 1: summing is averaging, so
        # the mistake does not exist there (the 2-output networks still show it at batch 1).
        if net.batch * setting.n_out == 1:
            continue
        wrong = net.answer(scale=1.0)  # the student forgot the 1/N of the mean
        body = check(client, net, wrong.layers, loss=wrong.loss)
        received[key] = outcomes(body)
        expected[key] = expected_outcomes(setting.n_layers, code, last, loss=code)
        assert "'mean'" in by_field(body)["layers.0.db"]["message"]
    assert_outcomes(received, expected)


def _diagnose_in_each_scope(client, setting, rule, code):
    """The mistake made in one layer at a time, then in every layer, for each loss and batch.

    Returns the received and expected outcomes keyed by (loss and batch, scope), and the messages
    that fail to name the layer the mistake was made in: the mistaken layer's own fields
    say "In layer k", the fields it propagated to "mistake in layer k, propagated back to
    layer i".
    """
    received, expected, unhelpful = {}, {}, []
    for (key, net), scope in product(setting.runs(), scopes(setting.n_layers)):
        name = scope_name(scope, setting.n_layers)
        body = check(client, net, net.answer(rule=rule, wrong_in=scope).layers)
        received[key, name] = outcomes(body)
        expected[key, name] = expected_outcomes(setting.n_layers, code, max(scope))
        if len(scope) > 1:
            continue
        (k,) = scope
        for path, result in by_field(body).items():
            i = int(path.split(".")[1])
            if result["diagnosis"] != code:
                continue
            wanted = (
                [f"In layer {k}"]
                if i == k
                else [f"mistake in layer {k}", f"propagated back to layer {i}"]
            )
            if not all(text in result["message"] for text in wanted):
                unhelpful.append((key, name, path, result["message"]))
    return received, expected, unhelpful


@pytest.mark.parametrize("setting", settings())
def test_sigmoid_and_tanh_derivatives_taken_at_z_are_diagnosed_as_derivative_of_preactivation(
    client, setting
):
    received, expected, unhelpful = _diagnose_in_each_scope(
        client, setting, preactivation_derivative, "derivative_of_preactivation"
    )
    assert_outcomes(received, expected)
    assert unhelpful == []


@pytest.mark.parametrize("setting", settings())
def test_a_forgotten_activation_derivative_is_diagnosed_as_missing_activation_derivative(
    client, setting
):
    received, expected, unhelpful = _diagnose_in_each_scope(
        client, setting, missing_derivative, "missing_activation_derivative"
    )
    assert_outcomes(received, expected)
    assert unhelpful == []


@pytest.mark.parametrize("setting", settings())
def test_the_seed_bug_at_the_sigmoid_output_is_diagnosed_as_derivative_of_error(client, setting):
    code = "derivative_of_error"
    last = setting.n_layers - 1
    received, expected = {}, {}
    for key, net in setting.runs():
        wrong = net.answer(output_dz=seed_bug_output_dz(net))
        body = check(client, net, wrong.layers, loss=net.answer().loss)
        received[key] = outcomes(body)
        expected[key] = expected_outcomes(setting.n_layers, code, last, loss="passed")
        results = by_field(body)
        assert results[f"layers.{last}.dz"]["message"].startswith(f"In layer {last}")
        if results["layers.0.dW"]["diagnosis"] == code:
            assert f"mistake in layer {last}" in results["layers.0.dW"]["message"]
    assert_outcomes(received, expected)


def error_derivative(activation, dh, z, h):
    """The seed bug in a hidden layer: the derivative formula applied to the incoming error."""
    return dh * (1 - dh) if activation == "sigmoid" else 1 - dh**2


@pytest.mark.parametrize("setting", settings())
def test_the_seed_bug_made_in_every_layer_is_diagnosed_as_derivative_of_error(client, setting):
    last = setting.n_layers - 1
    received, expected = {}, {}
    for key, net in setting.runs():
        wrong = net.answer(
            output_dz=seed_bug_output_dz(net), rule=error_derivative, wrong_in=range(last)
        )
        received[key] = outcomes(check(client, net, wrong.layers))
        expected[key] = expected_outcomes(setting.n_layers, "derivative_of_error", last)
    assert_outcomes(received, expected)


# -- the two buggy fragments, literally --------------------------------------------------------


def check_two_layers(client, x, y, parameters, loss, reduction, submitted):
    """A two-layer sigmoid network in the numpy convention, graded on every field."""
    W1, b1, W2, b2 = parameters
    request = {
        "inputs": x.tolist(),
        "targets": y.tolist(),
        "layers": [
            {"weights": W1.tolist(), "biases": b1.tolist(), "activation": "sigmoid"},
            {"weights": W2.tolist(), "biases": b2.tolist(), "activation": "sigmoid"},
        ],
        "loss": loss,
        "reduction": reduction,
        "submission": {
            "layers": [
                {name: value.tolist() for name, value in zip(FIELDS, layer)} for layer in submitted
            ]
        },
    }
    response = client.post("/v1/check", json=request)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("batch", [1, 4], ids=lambda b: f"batch{b}")
@pytest.mark.parametrize(
    ("loss", "reduction"), [("half_mse", "sum"), ("mse", "mean"), ("bce", "mean")]
)
def test_seed_fragment_dz2_equals_dh2_times_one_minus_dh2_is_derivative_of_error(
    client, loss, reduction, batch
):
    rng = np.random.default_rng(20 + batch)
    x = rng.normal(size=(batch, 3))
    y = rng.uniform(0.05, 0.95, size=(batch, 2))
    W1, b1 = rng.normal(scale=0.7, size=(3, 4)), rng.normal(scale=0.3, size=(1, 4))
    W2, b2 = rng.normal(scale=0.7, size=(4, 2)), rng.normal(scale=0.3, size=(1, 2))

    z1 = x @ W1 + b1
    h1 = 1 / (1 + np.exp(-z1))
    z2 = h1 @ W2 + b2
    h2 = 1 / (1 + np.exp(-z2))
    dh2 = h2 - y
    dz2 = dh2 * (1 - dh2)  # the bug: sigmoid's a * (1 - a) applied to the error
    dW2 = h1.T @ dz2
    db2 = np.sum(dz2, axis=0, keepdims=True)
    dh1 = dz2 @ W2.T
    dz1 = dh1 * h1 * (1 - h1)
    dW1 = x.T @ dz1
    db1 = np.sum(dz1, axis=0, keepdims=True)

    body = check_two_layers(
        client,
        x,
        y,
        (W1, b1, W2, b2),
        loss,
        reduction,
        [(z1, h1, dz1, dW1, db1), (z2, h2, dz2, dW2, db2)],
    )

    assert outcomes(body) == expected_outcomes(2, "derivative_of_error", 1)
    message = by_field(body)["layers.1.dz"]["message"]
    assert "dz = dh * (1 - dh)" in message
    assert "dz = dh * a * (1 - a)" in message


@pytest.mark.parametrize("batch", [1, 4], ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("where", ["hidden-layer", "every-layer"])
def test_sigmoid_derivative_written_z1_times_one_minus_z1_is_derivative_of_preactivation(
    client, where, batch
):
    rng = np.random.default_rng(40 + batch)
    x = rng.normal(size=(batch, 3))
    y = rng.uniform(0.05, 0.95, size=(batch, 1))
    W1, b1 = rng.normal(scale=0.7, size=(3, 4)), rng.normal(scale=0.3, size=(4,))
    W2, b2 = rng.normal(scale=0.7, size=(4, 1)), rng.normal(scale=0.3, size=(1,))

    z1 = x @ W1 + b1
    h1 = 1 / (1 + np.exp(-z1))
    z2 = h1 @ W2 + b2
    h2 = 1 / (1 + np.exp(-z2))
    dh2 = h2 - y  # half_mse, sum: dL/dh2
    dz2 = dh2 * h2 * (1 - h2)
    if where == "every-layer":
        dz2 = dh2 * z2 * (1 - z2)  # the same bug in the output layer
    dW2 = h1.T @ dz2
    db2 = np.sum(dz2, axis=0)
    dh1 = dz2 @ W2.T
    dz1 = dh1 * z1 * (1 - z1)  # the bug: sigmoid'(z1) written as z1 * (1 - z1)
    dW1 = x.T @ dz1
    db1 = np.sum(dz1, axis=0)

    body = check_two_layers(
        client,
        x,
        y,
        (W1, b1, W2, b2),
        "half_mse",
        "sum",
        [(z1, h1, dz1, dW1, db1), (z2, h2, dz2, dW2, db2)],
    )

    deepest = 0 if where == "hidden-layer" else 1
    assert outcomes(body) == expected_outcomes(2, "derivative_of_preactivation", deepest)
    assert "z * (1 - z)" in by_field(body)["layers.0.dz"]["message"]


# -- shape mistakes ----------------------------------------------------------------------------


def _graded_at(client, setting, batches, alter, *, loss=None):
    """The right answer, altered by ``alter(layer_index, layer)``, graded for each loss and
    batch size; returns {run: (network, right answer, submitted layers, response body)}."""
    graded = {}
    for key, net in setting.runs(batches):
        right = net.answer()
        layers = [alter(i, layer) for i, layer in enumerate(right.layers)]
        submitted_loss = None if loss is None else loss(right.loss)
        graded[key] = (net, right, layers, check(client, net, layers, loss=submitted_loss))
    return graded


@pytest.mark.parametrize("setting", settings(losses=[("bce", "mean")]))
def test_db_not_summed_over_the_batch_is_diagnosed(client, setting):
    # Batch 1 is left out: with one sample, dz has one row (or one column), so "db = dz, not
    # summed" is the right db in shape and in value.
    graded = _graded_at(client, setting, (2, 5), lambda i, layer: {**layer, "db": layer["dz"]})

    n = setting.n_layers
    expected = expected_outcomes(n, "passed", -1)
    expected.update({f"layers.{i}.db": "not_reduced_over_batch" for i in range(n)})
    assert_outcomes(graded_outcomes(graded), dict.fromkeys(graded, expected))
    for *_, body in graded.values():
        for i in range(n):
            message = by_field(body)[f"layers.{i}.db"]["message"]
            # issue 13, item 3: the fix gives exactly the problem's bias shape
            assert f"Fix: `{DB_FIX[BIAS_FORM[setting.convention]]}`" in message


@pytest.mark.parametrize("setting", settings(losses=[("mse", "mean")]))
def test_dW_transposed_is_diagnosed_with_the_conventions_formula(client, setting):
    graded = _graded_at(client, setting, BATCHES, lambda i, layer: {**layer, "dW": layer["dW"].T})

    n = setting.n_layers
    expected = expected_outcomes(n, "passed", -1)
    expected.update({f"layers.{i}.dW": "transposed" for i in range(n)})
    assert_outcomes(graded_outcomes(graded), dict.fromkeys(graded, expected))
    for *_, body in graded.values():
        for i in range(n):
            assert DW_FORMULA[setting.convention] in by_field(body)[f"layers.{i}.dW"]["message"]


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_a_square_dW_transposed_is_diagnosed_by_its_values(client, convention):
    net = Network(Case("3-layer-tanh-sigmoid", convention, "half_mse", "sum", 3))
    right = net.answer()
    assert right.layers[1]["dW"].shape == (4, 4)
    layers = [None, {"dW": right.layers[1]["dW"].T}, None]
    body = check(client, net, layers, fields=("dW",))

    assert outcomes(body) == {"layers.1.dW": "transposed"}
    assert DW_FORMULA[convention] in body["results"][0]["message"]


@pytest.mark.parametrize(
    "setting", settings(losses=[("mse", "mean")], conventions=("numpy", "torch"))
)
def test_db_as_a_column_vector_in_a_rows_convention_is_diagnosed(client, setting):
    graded = _graded_at(
        client, setting, BATCHES, lambda i, layer: {**layer, "db": layer["db"].reshape(-1, 1)}
    )

    expected = expected_outcomes(setting.n_layers, "passed", -1)
    sizes = NETWORKS[setting.network][0][1:]
    for i, n in enumerate(sizes):
        # a (1, 1) column is also a (1, 1) row: only wider layers can be told apart
        expected[f"layers.{i}.db"] = "column_vector_shape" if n > 1 else "passed"
    assert_outcomes(graded_outcomes(graded), dict.fromkeys(graded, expected))
    for *_, body in graded.values():
        for i, n in enumerate(sizes):
            if n > 1:
                message = by_field(body)[f"layers.{i}.db"]["message"]
                assert f"Fix: `{DB_FIX[BIAS_FORM[setting.convention]]}`" in message


def graded_outcomes(graded):
    return {run: outcomes(body) for run, (*_, body) in graded.items()}


def _reshaped_wrongly(i, layer):
    return {
        "z": layer["z"].reshape(-1),  # flattened
        "a": layer["a"],
        "dz": layer["dz"],
        "dW": np.vstack([layer["dW"], np.zeros((1, layer["dW"].shape[1]))]),  # one row too many
        "db": np.append(layer["db"].reshape(-1), 0.0),  # one value too many
    }


@pytest.mark.parametrize("setting", settings(losses=[("bce", "mean")]))
def test_arrays_of_any_other_wrong_shape_are_diagnosed_as_wrong_shape(client, setting):
    graded = _graded_at(client, setting, BATCHES, _reshaped_wrongly)

    n = setting.n_layers
    expected = expected_outcomes(n, "passed", -1)
    for i in range(n):
        expected.update({f"layers.{i}.{name}": "wrong_shape" for name in ("z", "dW", "db")})
    assert_outcomes(graded_outcomes(graded), dict.fromkeys(graded, expected))
    for _, right, layers, body in graded.values():
        for i in range(n):
            result = by_field(body)[f"layers.{i}.dW"]
            assert result["submitted_shape"] == list(layers[i]["dW"].shape)
            assert result["expected_shape"] == list(right.layers[i]["dW"].shape)
            assert "has shape" in result["message"]


@pytest.mark.parametrize("setting", settings(losses=[("half_mse", "sum")]))
def test_right_shapes_with_unexplained_values_are_diagnosed_as_wrong_values(client, setting):
    rng = np.random.default_rng(7)

    def noisy(i, layer):
        return {name: value + 0.05 * rng.normal(size=value.shape) for name, value in layer.items()}

    graded = _graded_at(client, setting, BATCHES, noisy, loss=lambda loss: loss + 0.123)

    expected = {"loss": "wrong_values"}
    expected.update(
        {
            f"layers.{i}.{name}": "wrong_values"
            for i, name in product(range(setting.n_layers), FIELDS)
        }
    )
    assert_outcomes(graded_outcomes(graded), dict.fromkeys(graded, expected))
    for *_, body in graded.values():
        for result in body["results"]:
            assert "no common mistake" in result["message"]
        assert DW_FORMULA[setting.convention] in by_field(body)["layers.0.dW"]["message"]


# -- bias shapes and strict_shapes -------------------------------------------------------------


@pytest.mark.parametrize("strict_shapes", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("submitted_form", ["flat", "row"])
@pytest.mark.parametrize("problem_form", ["flat", "row"])
@pytest.mark.parametrize("convention", ["numpy", "torch"])
def test_a_right_db_passes_as_flat_or_row_unless_strict_shapes_asks_for_the_problems_own(
    client, convention, problem_form, submitted_form, strict_shapes
):
    case = Case("2-layer-sigmoid", convention, "mse", "mean", 3, bias_form=problem_form)
    net = Network(case)
    right = net.answer()
    shape = {"flat": (-1,), "row": (1, -1)}[submitted_form]
    layers = [{"db": layer["db"].reshape(shape)} for layer in right.layers]
    body = check(client, net, layers, fields=("db",), strict_shapes=strict_shapes)

    same = problem_form == submitted_form
    if same or not strict_shapes:
        assert outcomes(body) == {"layers.0.db": "passed", "layers.1.db": "passed"}
        assert body["passed"] is True
    else:
        assert outcomes(body) == {"layers.0.db": "wrong_shape", "layers.1.db": "wrong_shape"}
        for result in body["results"]:
            assert "strict_shapes" in result["message"]


@pytest.mark.parametrize("strict_shapes", [False, True], ids=["lenient", "strict"])
def test_a_flat_db_in_the_columns_convention_is_a_wrong_shape_that_needs_keepdims(
    client, strict_shapes
):
    net = Network(Case("2-layer-sigmoid", "columns", "mse", "mean", 3))
    right = net.answer()
    layers = [{"db": layer["db"].reshape(-1)} for layer in right.layers]
    body = check(client, net, layers, fields=("db",), strict_shapes=strict_shapes)

    assert outcomes(body) == {"layers.0.db": "wrong_shape", "layers.1.db": "wrong_shape"}
    for result in body["results"]:
        assert "keepdims" in result["message"]
        assert "np.sum(dz, axis=1, keepdims=True)" in result["message"]


# -- reveal, the loss, the score and the order -------------------------------------------------


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_reveal_adds_the_right_answer_and_without_it_there_is_no_expected_key(client, convention):
    net = Network(Case("3-layer-sigmoid-tanh", convention, "bce", "mean", 4))
    right = net.answer()
    wrong = net.answer(rule=missing_derivative, wrong_in=(1,))

    hidden = check(client, net, wrong.layers, loss=right.loss * 2)
    assert all("expected" not in result for result in hidden["results"])

    shown = by_field(check(client, net, wrong.layers, loss=right.loss * 2, reveal=True))
    assert shown["loss"]["expected"] == pytest.approx(right.loss, rel=1e-9)
    for i, layer in enumerate(right.layers):
        for name in FIELDS:
            result = shown[f"layers.{i}.{name}"]
            assert np.shape(result["expected"]) == layer[name].shape
            np.testing.assert_allclose(result["expected"], layer[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", ["half_mse", "mse", "bce"])
def test_a_submitted_loss_is_graded(client, loss):
    net = Network(Case("2-layer-tanh", "numpy", loss, "sum", 4))
    right = net.answer()

    body = check(client, net, [None, None], loss=right.loss)
    assert outcomes(body) == {"loss": "passed"}

    averaged = check(client, net, [None, None], loss=right.loss / 4)
    assert outcomes(averaged) == {"loss": "averaged_instead_of_summed"}

    unexplained = check(client, net, [None, None], loss=right.loss * 1.37)
    assert outcomes(unexplained) == {"loss": "wrong_values"}


def test_score_checked_correct_and_passed_agree(client):
    net = Network(Case("3-layer-tanh-sigmoid", "torch", "mse", "mean", 5))
    right = net.answer()
    layers = [
        {"z": right.layers[0]["z"], "dW": right.layers[0]["dW"].T},  # right, transposed
        None,  # layer 1 not submitted
        # right, right, and db not summed over the batch
        {"a": right.layers[2]["a"], "dz": right.layers[2]["dz"], "db": right.layers[2]["dz"]},
    ]
    submission = {
        "loss": right.loss,
        "layers": [
            None if layer is None else {k: v.tolist() for k, v in layer.items()} for layer in layers
        ],
    }
    response = client.post("/v1/check", json={**net.problem(), "submission": submission})
    assert response.status_code == 200
    body = response.get_json()

    assert outcomes(body) == {
        "loss": "passed",
        "layers.0.z": "passed",
        "layers.0.dW": "transposed",
        "layers.2.a": "passed",
        "layers.2.dz": "passed",
        "layers.2.db": "not_reduced_over_batch",
    }
    assert [r["field"] for r in body["results"]] == [
        "loss",
        "layers.0.z",
        "layers.0.dW",
        "layers.2.a",
        "layers.2.dz",
        "layers.2.db",
    ]
    assert body["checked"] == 6 == len(body["results"])
    assert body["correct"] == 4 == sum(r["passed"] for r in body["results"])
    assert body["score"] == pytest.approx(4 / 6)
    assert body["passed"] is False

    everything = check(client, net, right.layers, loss=right.loss)
    assert (everything["checked"], everything["correct"]) == (16, 16)
    assert everything["score"] == 1.0
    assert everything["passed"] is True


def test_results_come_loss_first_then_layer_by_layer_in_the_order_z_a_dz_dW_db(client):
    net = Network(Case("2-layer-sigmoid", "columns", "half_mse", "sum", 3))
    right = net.answer()
    reversed_keys = [
        {name: layer[name].tolist() for name in reversed(FIELDS)} for layer in right.layers
    ]
    submission = {"layers": reversed_keys, "loss": right.loss}
    response = client.post("/v1/check", json={**net.problem(), "submission": submission})
    assert response.status_code == 200
    body = response.get_json()

    assert [r["field"] for r in body["results"]] == ["loss"] + [
        f"layers.{i}.{name}" for i in range(2) for name in FIELDS
    ]


# -- Gradescope --------------------------------------------------------------------------------


def test_gradescope_format_has_one_test_per_checked_field_with_the_diagnosis(client):
    net = Network(Case("2-layer-sigmoid", "numpy", "half_mse", "sum", 4))
    right = net.answer()
    wrong = net.answer(rule=preactivation_derivative, wrong_in=(0,))
    layers = [
        {"dW": wrong.layers[0]["dW"], "db": wrong.layers[0]["dz"]},
        {"dW": right.layers[1]["dW"], "db": right.layers[1]["db"]},
    ]
    json_body = check(client, net, layers, fields=("dW", "db"), loss=right.loss)
    response = client.post(
        "/v1/check",
        json={
            **net.problem(),
            "submission": {"loss": right.loss, "layers": as_lists(layers, ("dW", "db"))},
            "format": "gradescope",
        },
    )

    assert response.status_code == 200
    body = response.get_json()
    assert {"score", "tests"} <= set(body)
    assert body["score"] == json_body["correct"] == 3
    assert len(body["tests"]) == json_body["checked"] == 5
    for test, result in zip(body["tests"], json_body["results"]):
        # issue 16: the spec's whole test object (number, output_format, tags, visibility too)
        assert set(test) == {
            "name",
            "number",
            "score",
            "max_score",
            "status",
            "output",
            "output_format",
            "tags",
            "visibility",
        }
        assert test["name"] == result["field"]
        assert test["max_score"] == 1
        assert test["score"] == int(result["passed"])
        assert test["status"] == ("passed" if result["passed"] else "failed")
        assert result["message"] in test["output"]
        if not result["passed"]:
            assert result["diagnosis"] in test["output"]
    statuses = {t["name"]: t["status"] for t in body["tests"]}
    assert statuses == {
        "loss": "passed",
        "layers.0.dW": "failed",
        "layers.0.db": "failed",
        "layers.1.dW": "passed",
        "layers.1.db": "passed",
    }


# -- malformed submissions are 422 problem+json ------------------------------------------------


def _two_layer_problem():
    return Network(Case("2-layer-sigmoid", "numpy", "mse", "mean", 2)).problem()


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        pytest.param(
            {"submission": {"layers": [None]}}, "submission.layers", id="one-of-two-layers"
        ),
        pytest.param(
            {"submission": {"layers": [None, None, None]}},
            "submission.layers",
            id="three-of-two-layers",
        ),
        pytest.param(
            {"submission": {"layers": [{"dW": [[0.1, 0.2], [0.3]]}, None]}},
            "submission.layers.0.dW",
            id="ragged-array",
        ),
        pytest.param(
            {"submission": {"layers": [None, {"db": [0.1, "0.2"]}]}},
            "submission.layers.1.db",
            id="string-in-array",
        ),
        pytest.param(
            {"submission": {"layers": [{"grad_W": [[0.1]]}, None]}},
            "submission.layers.0.grad_W",
            id="unknown-key-in-layer",
        ),
        pytest.param(
            {"submission": {"layers": [None, None]}, "strict_shapes": "yes"},
            "strict_shapes",
            id="strict-shapes-as-string",
        ),
        # {} has no loss and no layers: either fault may be the one named
        pytest.param(
            {"submission": {}}, ("submission", "submission.layers"), id="empty-submission"
        ),
        pytest.param({"submission": {"layers": [None, None]}}, "submission", id="only-null-layers"),
    ],
)
def test_a_malformed_submission_is_a_422_problem_naming_the_field(client, overrides, path):
    response = client.post("/v1/check", json={**_two_layer_problem(), **overrides})

    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.get_json(force=True)
    assert body["status"] == 422
    paths = path if isinstance(path, tuple) else (path,)
    assert set(paths) & set(body["errors"]), body["errors"]


def test_a_well_formed_array_of_the_wrong_shape_is_graded_not_refused(client):
    request = {**_two_layer_problem(), "submission": {"layers": [{"dW": [[0.1, 0.2]]}, None]}}
    response = client.post("/v1/check", json=request)

    assert response.status_code == 200
    assert outcomes(response.get_json()) == {"layers.0.dW": "wrong_shape"}


# -- issue 14, first step: bias-free layers and upstream -------------------------------------


def upstream_problem(rng):
    """A bias-free tanh layer, then a sigmoid layer with a bias; dout instead of a loss."""
    x, W1, W2, b2, dout = (rng.normal(size=s) for s in [(5, 3), (3, 4), (4, 2), (2,), (5, 2)])
    problem = {
        "inputs": x.tolist(),
        "layers": [
            {"weights": W1.tolist(), "activation": "tanh"},
            {"weights": W2.tolist(), "biases": b2.tolist(), "activation": "sigmoid"},
        ],
        "upstream": dout.tolist(),
    }
    return problem, (x, W1, W2, b2, dout)


def hand_written_upstream_backward(x, W1, W2, b2, dout, *, forget_tanh=False):
    h = np.tanh(x @ W1)
    s = sigmoid(h @ W2 + b2)
    dz2 = dout * s * (1 - s)
    dh = dz2 @ W2.T
    dz1 = dh if forget_tanh else dh * (1 - h**2)
    return [{"dz": dz1, "dW": x.T @ dz1}, {"dz": dz2, "dW": h.T @ dz2, "db": dz2.sum(axis=0)}]


def test_an_upstream_problem_without_biases_is_graded_and_its_mistakes_named(client):
    problem, arrays = upstream_problem(np.random.default_rng(14))
    right = hand_written_upstream_backward(*arrays)
    wrong = hand_written_upstream_backward(*arrays, forget_tanh=True)
    for submitted, layer0 in [(right, "passed"), (wrong, "missing_activation_derivative")]:
        layers = [{k: v.tolist() for k, v in layer.items()} for layer in submitted]
        response = client.post("/v1/check", json=problem | {"submission": {"layers": layers}})
        assert response.status_code == 200, response.get_json()
        assert outcomes(response.get_json()) == {
            "layers.0.dz": layer0,
            "layers.0.dW": layer0,
            "layers.1.dz": "passed",
            "layers.1.dW": "passed",
            "layers.1.db": "passed",
        }


def test_a_db_submitted_for_a_layer_without_bias_is_422_naming_it(client):
    problem, _ = upstream_problem(np.random.default_rng(14))
    submission = {"layers": [{"db": [0.0, 0.0, 0.0, 0.0]}, None]}
    response = client.post("/v1/check", json=problem | {"submission": submission})
    assert response.status_code == 422
    message = " ".join(response.get_json()["errors"]["submission.layers.0.db"])
    assert "layer 0 has no bias" in message and "leave submission.layers.0.db out" in message


def test_a_loss_submitted_for_an_upstream_problem_is_422(client):
    problem, _ = upstream_problem(np.random.default_rng(14))
    submission = {"loss": 1.0, "layers": [None, None]}
    response = client.post("/v1/check", json=problem | {"submission": submission})
    assert response.status_code == 422
    assert "has no loss to check" in " ".join(response.get_json()["errors"]["submission.loss"])
