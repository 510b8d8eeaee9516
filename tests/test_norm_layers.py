"""The batchnorm and layernorm layer types: CS231n's batchnorm and layernorm, makemore's variant.

Every number (loss, z, a, dz, dx, dgamma, dbeta, the dense layers' dW and db around them,
the updated running statistics and layers) is PyTorch float64 autograd's within 1e-9
(tests/torch_reference.py, fed the request as sent), in every convention and accepted vector
shape; CS231n's own formulas, written out in NumPy below, and CS231n's published check
values agree with the service too.  Bad requests are 422s at the field's path, never 500s.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.problems import CONVENTIONS, post
from tests.torch_reference import assert_close, assert_matches_torch, reference

ALL = ["z", "a", "dz", "dx"]
FORMS = {"numpy": ("flat", "row"), "torch": ("flat", "row"), "columns": ("column",)}
CONVENTION_FORMS = [(c, form) for c in CONVENTIONS for form in FORMS[c]]


def vector(values: np.ndarray, form: str) -> list:
    """One value per feature, laid out as the client sends a bias: (n,), (1, n) or (n, 1)."""
    values = np.asarray(values, dtype=np.float64)
    if form == "flat":
        return values.tolist()
    if form == "row":
        return values.reshape(1, -1).tolist()
    return values.reshape(-1, 1).tolist()


def norm_network(
    seed: int,
    convention: str,
    form: str,
    norm: str,
    *,
    batch: int = 5,
    widths: tuple[int, int, int] = (3, 4, 2),
    activation: str = "relu",
    **settings,
) -> dict:
    """CS231n's affine -> norm -> relu -> affine: [{dense}, {norm, relu}, {dense}], mse.

    ``settings`` are the norm's other fields; arrays among them (running statistics) are
    laid out like gamma.
    """
    rng = np.random.default_rng(seed)
    n0, n1, n2 = widths
    x = rng.normal(size=(batch, n0))
    w1, b1 = rng.normal(size=(n0, n1)), rng.normal(size=n1)
    w2, b2 = rng.normal(size=(n1, n2)) / 2, rng.normal(size=n2)
    y = rng.normal(size=(batch, n2))
    columns, out_by_in = convention == "columns", convention != "numpy"
    norm_layer = {
        "type": norm,
        "gamma": vector(1.0 + 0.5 * rng.normal(size=n1), form),
        "beta": vector(rng.normal(size=n1), form),
        "activation": activation,
        **{k: vector(v, form) if isinstance(v, np.ndarray) else v for k, v in settings.items()},
    }
    dense = [(w1, b1), (w2, b2)]
    first, last = (
        {"weights": (w.T if out_by_in else w).tolist(), "biases": vector(b, form)}
        | {"activation": "identity"}
        for w, b in dense
    )
    return {
        "inputs": (x.T if columns else x).tolist(),
        "targets": (y.T if columns else y).tolist(),
        "layers": [first, norm_layer, last],
        "loss": "mse",
        "convention": convention,
        "include": ALL,
    }


def running_statistics(seed: int, n: int = 4) -> dict:
    rng = np.random.default_rng(seed + 100)
    return {"running_mean": rng.normal(size=n), "running_var": rng.uniform(0.5, 2.0, size=n)}


# -- PyTorch float64 autograd, in every convention and vector shape -----------------------------


@pytest.mark.parametrize(
    ("convention", "form", "mode", "variance", "running"),
    [
        pytest.param(c, f, m, v, r, id=f"{c}-{f}-{m}-{v}-{'running' if r else 'no-running'}")
        for (c, f), m, v, r in itertools.product(
            CONVENTION_FORMS, ("train", "eval"), ("biased", "unbiased"), (False, True)
        )
        if m == "train" or r  # eval needs the running statistics
    ],
)
def test_batchnorm_networks_match_torch(client, convention, form, mode, variance, running):
    seed = len(convention) * 7 + len(form) + (mode == "eval") * 3 + (variance == "unbiased")
    settings = {"mode": mode, "variance": variance, "momentum": 0.8, "eps": 1e-3}
    if running:
        settings |= running_statistics(seed)
    request = norm_network(seed, convention, form, "batchnorm", **settings)
    request["learning_rate"] = 0.3
    answer = post(client, request)

    assert_matches_torch(answer, request)
    assert ("running_mean" in answer["layers"][1]) == (mode == "train" and running)


@pytest.mark.parametrize(("convention", "form"), CONVENTION_FORMS)
def test_batchnorm_with_its_defaults_is_torch_batch_norm_in_training(client, convention, form):
    """No eps, mode, variance or momentum sent: eps 1e-5, batch statistics, the biased variance;
    the running statistics, sent, come back updated with momentum 0.9."""
    request = norm_network(21, convention, form, "batchnorm", **running_statistics(21))
    answer = post(client, request)
    assert_matches_torch(answer, request)


@pytest.mark.parametrize(("convention", "form"), CONVENTION_FORMS)
def test_layernorm_networks_match_torch(client, convention, form):
    request = norm_network(5, convention, form, "layernorm") | {"learning_rate": 0.5}
    assert_matches_torch(post(client, request), request)


def test_a_layernorm_with_its_own_eps_and_a_batch_of_one_matches_torch(client):
    request = norm_network(6, "numpy", "flat", "layernorm", batch=1, eps=0.01)
    assert_matches_torch(post(client, request), request)


def test_batchnorm_under_a_class_label_loss_matches_torch(client):
    request = norm_network(8, "torch", "flat", "batchnorm", widths=(3, 6, 4), variance="unbiased")
    request |= {"loss": "cross_entropy", "targets": [0, 3, 1, 1, 2]}
    request["layers"][-1]["activation"] = "softmax"
    assert_matches_torch(post(client, request), request)


def test_the_running_average_is_cs231ns_with_the_variance_named(client):
    """momentum * running + (1 - momentum) * batch statistic; unbiased: the sum of squares / (N-1).
    (torch's own momentum weights the batch, and its running variance is always unbiased.)"""
    x = np.array([[1.0, 2.0], [3.0, 6.0], [8.0, 1.0]])
    for variance, divisor in (("biased", 3), ("unbiased", 2)):
        request = {
            "inputs": x.tolist(),
            "upstream": np.ones((3, 2)).tolist(),
            "layers": [
                {
                    "type": "batchnorm",
                    "gamma": [1.0, 1.0],
                    "beta": [0.0, 0.0],
                    "variance": variance,
                    "momentum": 0.75,
                    "running_mean": [[1.0, -1.0]],
                    "running_var": [[2.0, 0.5]],
                }
            ],
        }
        layer = post(client, request)["layers"][0]
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).sum(axis=0) / divisor
        np.testing.assert_allclose(layer["running_mean"], [0.75 * np.array([1, -1]) + 0.25 * mean])
        np.testing.assert_allclose(layer["running_var"], [0.75 * np.array([2, 0.5]) + 0.25 * var])


# -- the courses' own formulas and check values -------------------------------------------------


def cs231n_batchnorm_forward(x, gamma, beta, eps=1e-5):
    """CS231n assignment 2's batchnorm_forward in train mode, as a staged graph."""
    mu = x.mean(axis=0)
    xmu = x - mu
    var = (xmu**2).mean(axis=0)
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    return gamma * xhat + beta, (xhat, gamma, xmu, ivar, sqrtvar, var, eps)


def cs231n_batchnorm_backward(dout, cache):
    """CS231n's batchnorm_backward: back through every node of the staged graph."""
    xhat, gamma, xmu, ivar, sqrtvar, var, eps = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    divar = (dxhat * xmu).sum(axis=0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -divar / sqrtvar**2
    dvar = 0.5 * dsqrtvar / np.sqrt(var + eps)
    dsq = dvar * np.ones_like(dout) / n
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=0)
    dx2 = dmu * np.ones_like(dout) / n
    return dx1 + dx2, dgamma, dbeta


def cs231n_layernorm_backward(dout, x, gamma, eps=1e-5):
    """CS231n's layernorm_backward: batchnorm's graph on the transposed input."""
    d = x.shape[1]
    mu = x.mean(axis=1, keepdims=True)
    xmu = x - mu
    var = (xmu**2).mean(axis=1, keepdims=True)
    ivar = 1.0 / np.sqrt(var + eps)
    xhat = xmu * ivar
    dxhat = dout * gamma
    dvar = (dxhat * xmu).sum(axis=1, keepdims=True) * -0.5 * ivar**3
    dmu = -(dxhat * ivar).sum(axis=1, keepdims=True) + dvar * -2 * xmu.mean(axis=1, keepdims=True)
    dx = dxhat * ivar + dvar * 2 * xmu / d + dmu / d
    return xhat * gamma, dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def makemore_batchnorm_backward(dout, x, gamma, eps=1e-5):
    """Karpathy's backprop-ninja answer (makemore part 4): the Bessel-corrected batchnorm,
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                        - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))"""
    n = x.shape[0]
    bnvar_inv = (x.var(axis=0, ddof=1) + eps) ** -0.5
    bnraw = (x - x.mean(axis=0)) * bnvar_inv
    dx = (
        gamma
        * bnvar_inv
        / n
        * (n * dout - dout.sum(0) - n / (n - 1) * bnraw * (dout * bnraw).sum(0))
    )
    return dx, (dout * bnraw).sum(0), dout.sum(0)


def single_layer(layer: dict, x: np.ndarray, dout: np.ndarray) -> dict:
    return {"inputs": x.tolist(), "upstream": dout.tolist(), "layers": [layer], "include": ALL}


def cs231n_check_inputs():
    """CS231n's gradient check of batchnorm_backward (and layernorm_backward): seed 231."""
    np.random.seed(231)
    n, d = 4, 5
    x = 5 * np.random.randn(n, d) + 12
    gamma, beta, dout = np.random.randn(d), np.random.randn(d), np.random.randn(n, d)
    return x, gamma, beta, dout


def test_a_single_batchnorm_layer_is_cs231ns_batchnorm_forward_and_backward(client):
    x, gamma, beta, dout = cs231n_check_inputs()
    layer = {"type": "batchnorm", "gamma": gamma.tolist(), "beta": beta.tolist()}
    answer = post(client, single_layer(layer, x, dout))

    out, cache = cs231n_batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = cs231n_batchnorm_backward(dout, cache)
    got = answer["layers"][0]
    assert answer["loss"] is None
    assert_close(got["z"], out, "z")
    assert_close(got["dx"], dx, "dx")
    assert_close(got["dgamma"], dgamma, "dgamma")
    assert_close(got["dbeta"], dbeta, "dbeta")


def test_a_single_eval_batchnorm_layer_scales_dout_by_gamma_over_the_running_std(client):
    x, gamma, beta, dout = cs231n_check_inputs()
    running_mean, running_var = x.mean(axis=0) + 1.0, x.var(axis=0) * 2.0
    layer = {
        "type": "batchnorm",
        "gamma": gamma.tolist(),
        "beta": beta.tolist(),
        "mode": "eval",
        "running_mean": running_mean.tolist(),
        "running_var": running_var.tolist(),
    }
    got = post(client, single_layer(layer, x, dout))["layers"][0]

    x_hat = (x - running_mean) / np.sqrt(running_var + 1e-5)  # CS231n's test mode
    assert_close(got["z"], gamma * x_hat + beta, "z")
    assert_close(got["dx"], dout * gamma / np.sqrt(running_var + 1e-5), "dx")
    assert_close(got["dgamma"], (dout * x_hat).sum(axis=0), "dgamma")
    assert "running_mean" not in got  # eval mode updates nothing


def test_a_single_unbiased_batchnorm_layer_is_makemores_bessel_corrected_backward(client):
    x, gamma, beta, dout = cs231n_check_inputs()
    layer = {"type": "batchnorm", "gamma": gamma.tolist(), "beta": beta.tolist()}
    got = post(client, single_layer(layer | {"variance": "unbiased"}, x, dout))["layers"][0]

    dx, dgamma, dbeta = makemore_batchnorm_backward(dout, x, gamma)
    assert_close(got["dx"], dx, "dx")
    assert_close(got["dgamma"], dgamma, "dgamma")
    assert_close(got["dbeta"], dbeta, "dbeta")


def test_a_single_layernorm_layer_is_cs231ns_layernorm_backward(client):
    x, gamma, beta, dout = cs231n_check_inputs()
    layer = {"type": "layernorm", "gamma": gamma.tolist(), "beta": beta.tolist()}
    got = post(client, single_layer(layer, x, dout))["layers"][0]

    scaled, dx, dgamma, dbeta = cs231n_layernorm_backward(dout, x, gamma)
    assert_close(got["z"], scaled + beta, "z")
    assert_close(got["dx"], dx, "dx")
    assert_close(got["dgamma"], dgamma, "dgamma")
    assert_close(got["dbeta"], dbeta, "dbeta")


def cs231n_forward_check_network(gamma, beta, **batchnorm) -> tuple[list, np.random.RandomState]:
    """CS231n's batchnorm_forward check: seed 231, a = relu(X W1) W2, 200 samples, 3 features."""
    rng = np.random.RandomState(231)
    n, d1, d2, d3 = 200, 50, 60, 3
    x = rng.randn(n, d1)
    w1, w2 = rng.randn(d1, d2), rng.randn(d2, d3)
    layers = [
        {"weights": w1.tolist(), "activation": "relu"},
        {"weights": w2.tolist(), "activation": "identity"},
        {"type": "batchnorm", "gamma": gamma, "beta": beta, **batchnorm},
    ]
    return x, layers, rng


def test_cs231ns_published_batchnorm_forward_check_values(client):
    """BatchNormalization.ipynb prints these (8 digits): before, and after with gamma and beta."""
    x, layers, _ = cs231n_forward_check_network([1.0, 2.0, 3.0], [11.0, 12.0, 13.0])
    request = {"inputs": x.tolist(), "upstream": np.zeros((200, 3)).tolist(), "layers": layers}
    answer = post(client, request | {"include": ["z"]})
    before, after = np.array(answer["layers"][1]["z"]), np.array(answer["layers"][2]["z"])

    np.testing.assert_allclose(before.mean(axis=0), [-2.3814598, -13.18038246, 1.91780462], 1e-8)
    np.testing.assert_allclose(before.std(axis=0), [27.18502186, 34.21455511, 37.68611762], 1e-8)
    np.testing.assert_allclose(after.mean(axis=0), [11.0, 12.0, 13.0], 1e-12)
    np.testing.assert_allclose(after.std(axis=0), [0.99999999, 1.99999999, 2.99999999], 1e-8)


def test_cs231ns_published_test_time_check_values(client):
    """50 training passes warm the running averages up (CS231n starts them at zeros), then one
    test-time pass: BatchNormalization.ipynb prints these means and standard deviations."""
    rng = np.random.RandomState(231)
    n, d1, d2, d3 = 200, 50, 60, 3
    w1, w2 = rng.randn(d1, d2), rng.randn(d2, d3)
    running = {"running_mean": [0.0] * d3, "running_var": [0.0] * d3}
    dense = [
        {"weights": w1.tolist(), "activation": "relu"},
        {"weights": w2.tolist(), "activation": "identity"},
    ]
    norm = {"type": "batchnorm", "gamma": [1.0] * d3, "beta": [0.0] * d3}
    for _ in range(50):
        request = {
            "inputs": rng.randn(n, d1).tolist(),
            "upstream": np.zeros((n, d3)).tolist(),
            "layers": [*dense, norm | running],
            "include": [],
        }
        layer = post(client, request)["layers"][2]
        running = {name: layer[name] for name in running}
    request["inputs"] = rng.randn(n, d1).tolist()
    request["layers"] = [*dense, norm | running | {"mode": "eval"}]
    out = np.array(post(client, request | {"include": ["z"]})["layers"][2]["z"])

    np.testing.assert_allclose(out.mean(axis=0), [-0.03927354, -0.04349152, -0.10452688], 1e-6)
    np.testing.assert_allclose(out.std(axis=0), [1.01531428, 1.01238373, 0.97819988], 1e-8)


# -- a network, its gradient check and its learning-rate step -----------------------------------


def test_cs231ns_affine_batchnorm_relu_network_passes_the_gradient_check(client):
    """[{dense, identity}, {batchnorm, relu}, {dense}]: every parameter and every dx."""
    request = norm_network(3, "numpy", "flat", "batchnorm", batch=6, widths=(4, 5, 3))
    request |= {"gradient_check": True, "learning_rate": 0.1}
    answer = post(client, request)

    check = answer["gradient_check"]
    assert [sorted(layer) for layer in check["layers"]] == [
        ["dW", "db", "dx"],
        ["dbeta", "dgamma", "dx"],
        ["dW", "db", "dx"],
    ]
    assert check["max_relative_error"] < 1e-6, check
    assert sorted(answer["updated_layers"][1]) == ["beta", "gamma"]
    assert_matches_torch(answer, request)


def test_a_layernorm_network_passes_the_gradient_check(client):
    request = norm_network(4, "columns", "column", "layernorm", batch=3, activation="tanh")
    answer = post(client, request | {"gradient_check": True})
    assert sorted(answer["gradient_check"]["layers"][1]) == ["dbeta", "dgamma", "dx"]
    assert answer["gradient_check"]["max_relative_error"] < 1e-6


# -- bad requests: 422 at the field's path ------------------------------------------------------


def errors_of(client, request: dict, path: str = "/v1/gradients") -> dict:
    response = client.post(path, json=request)
    assert response.status_code == 422, response.get_data(as_text=True)
    return response.get_json()["errors"]


def batchnorm_request(convention: str = "numpy", form: str = "flat", **settings) -> dict:
    return norm_network(2, convention, form, "batchnorm", **settings)


def test_gamma_of_the_wrong_length_says_how_many_features_the_layer_has(client):
    request = batchnorm_request()
    request["layers"][1]["gamma"] = [1.0, 2.0, 3.0]
    message = errors_of(client, request)["layers.1.gamma"][0]
    assert message.startswith("got shape (3,), expected (4,) or (1, 4): gamma holds one scale")
    assert "layer 0 has 4 units, so gamma needs 4 value(s), but 3 were sent" in message


def test_a_column_gamma_in_numpy_is_refused_with_the_broadcast_it_would_cause(client):
    request = batchnorm_request()
    request["layers"][1]["gamma"] = [[1.0], [2.0], [3.0], [4.0]]
    message = errors_of(client, request)["layers.1.gamma"][0]
    assert message == (
        "got shape (4, 1), expected (4,) or (1, 4) in the 'numpy' convention, where the layer's "
        "input is (5, 4), its 4 features along axis 1 (layer 0 has 4 units): gamma holds one "
        "scale per feature, and a (4, 1) gamma lines up with the batch axis instead. NumPy would "
        "fail with 'operands could not be broadcast together with shapes (5, 4) (4, 1)'. Fix: "
        "send it as a flat list [v1, ..., v4] of shape (4,) or as one row [[v1, ..., v4]] of "
        "shape (1, 4)."
    )


def test_a_row_gamma_in_columns_with_as_many_samples_as_features_is_the_silent_trap(client):
    request = batchnorm_request("columns", "column", batch=4)
    request["layers"][1]["gamma"] = [[1.0, 2.0, 3.0, 4.0]]
    message = errors_of(client, request)["layers.1.gamma"][0]
    assert "NumPy would silently apply one gamma value per sample instead of per feature" in message
    assert message.endswith("Fix: send it as a column [[v1], [v2], ...] of shape (4, 1).")


def test_a_flat_beta_in_columns_is_refused(client):
    request = batchnorm_request("columns", "column")
    request["layers"][1]["beta"] = [0.0, 0.1, 0.2, 0.3]
    message = errors_of(client, request)["layers.1.beta"][0]
    assert message.startswith("got shape (4,), expected (4, 1) in the 'columns' convention")


def test_eval_mode_without_running_statistics_says_they_are_required(client):
    errors = errors_of(client, batchnorm_request(mode="eval"))
    assert set(errors) == {"layers.1.running_mean", "layers.1.running_var"}
    assert 'mode "eval" normalises with the running statistics' in errors["layers.1.running_var"][0]


def test_one_running_statistic_without_the_other_is_refused(client):
    errors = errors_of(client, batchnorm_request(running_mean=np.zeros(4)))
    assert list(errors) == ["layers.1.running_var"]
    assert "running_mean was sent without running_var" in errors["layers.1.running_var"][0]


def test_a_negative_running_variance_is_named_by_its_index(client):
    stats = running_statistics(0) | {"running_var": np.array([1.0, 0.5, -0.25, 2.0])}
    errors = errors_of(client, batchnorm_request("torch", "row", mode="eval", **stats))
    assert errors == {
        "layers.1.running_var": [
            "running_var[0][2] is -0.25: a variance is never negative (the square root of "
            "running_var + eps would not be a number). Send the running variances, each >= 0."
        ]
    }


def test_running_statistics_are_shaped_like_gamma(client):
    stats = running_statistics(0) | {"running_mean": np.zeros(3)}
    errors = errors_of(client, batchnorm_request(**stats))
    assert list(errors) == ["layers.1.running_mean"]
    assert "running_mean holds one running mean per feature" in errors["layers.1.running_mean"][0]


def test_the_unbiased_variance_with_a_batch_of_one_is_refused(client):
    errors = errors_of(client, batchnorm_request(batch=1, variance="unbiased"))
    assert list(errors) == ["layers.1.variance"]
    assert "which is 0 with a batch of 1" in errors["layers.1.variance"][0]


@pytest.mark.parametrize("eps", [0, -1e-5])
def test_eps_must_be_positive(client, eps):
    errors = errors_of(client, batchnorm_request(eps=eps))
    assert list(errors) == ["layers.1.eps"]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("momentum", 1.5, "must be in [0, 1] (got 1.5)."),
        ("mode", "test", "unknown mode 'test'; expected one of train, eval."),
        ("variance", "bessel", "unknown variance 'bessel'; expected one of biased, unbiased."),
    ],
)
def test_settings_out_of_their_range_are_refused(client, field, value, fragment):
    errors = errors_of(client, batchnorm_request(**{field: value}))
    assert fragment in errors[f"layers.1.{field}"][0]


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_an_unknown_field_gets_a_did_you_mean(client, norm):
    request = norm_network(2, "numpy", "flat", norm)
    request["layers"][1]["gama"] = request["layers"][1].pop("gamma")
    errors = errors_of(client, request)
    assert list(errors) == ["layers.1.gama"]
    assert errors["layers.1.gama"][0].startswith("unknown field. Did you mean 'gamma'?")


def test_layernorm_fields_are_its_own(client):
    request = norm_network(2, "numpy", "flat", "layernorm", mode="eval")
    assert "unknown field" in errors_of(client, request)["layers.1.mode"][0]


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_a_variance_beyond_float64_is_refused_not_answered_as_a_zero_x_hat(client, norm):
    """The sum of squares of 1e200 overflows: 1/std would be 0 and z silently beta."""
    request = {
        "inputs": [[1e200, 2.0], [3.0, -1e200], [0.0, 1.0]],
        "upstream": np.ones((3, 2)).tolist(),
        "layers": [{"type": norm, "gamma": [1.0, 1.0], "beta": [0.5, 0.5]}],
    }
    assert errors_of(client, request) == {
        "layers.0": [
            "layer 0's z overflowed to a non-finite value; the weights or inputs are too large "
            "for float64 (scale them down)."
        ]
    }


# -- /v1/check ----------------------------------------------------------------------------------


def check(client, request: dict, submission_layer: dict, **options) -> dict:
    problem = {k: v for k, v in request.items() if k not in ("include", "learning_rate")}
    body = problem | {"submission": {"layers": [None, submission_layer, None]}} | options
    response = client.post("/v1/check", json=body)
    assert response.status_code == 200, response.get_json()
    return {r["field"]: r for r in response.get_json()["results"]}


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_check_passes_correct_dgamma_dbeta_and_dx_and_fails_wrong_ones(client, norm):
    request = norm_network(9, "numpy", "flat", norm)
    want = reference(request)["layers"][1]
    right = {name: want[name].tolist() for name in ("dgamma", "dbeta", "dx")}
    results = check(client, request, right)
    assert [r["passed"] for r in results.values()] == [True, True, True]

    wrong = {name: (1.1 * want[name]).tolist() for name in ("dgamma", "dbeta", "dx")}
    results = check(client, request, wrong)
    assert {f: r["diagnosis"] for f, r in results.items()} == {
        "layers.1.dx": "wrong_values",
        "layers.1.dgamma": "wrong_values",
        "layers.1.dbeta": "wrong_values",
    }
    formula = {
        "batchnorm": "dx = gamma / std / N * (N * dz - sum(dz) - x_hat * sum(dz * x_hat))",
        "layernorm": "dx = (1 / std) / D * (D * g - sum(g) - x_hat * sum(g * x_hat))",
    }[norm]
    assert formula in results["layers.1.dx"]["message"]


def test_check_accepts_dgamma_as_a_row_for_a_flat_gamma_unless_strict(client):
    request = norm_network(9, "torch", "flat", "batchnorm")
    dgamma = reference(request)["layers"][1]["dgamma"]
    results = check(client, request, {"dgamma": [dgamma.tolist()]})
    assert results["layers.1.dgamma"]["passed"]
    assert results["layers.1.dgamma"]["message"] == (
        "Correct. Accepted in shape (1, 4); the problem's gamma is (4,)."
    )

    strict = check(client, request, {"dgamma": [dgamma.tolist()]}, strict_shapes=True)
    assert strict["layers.1.dgamma"]["diagnosis"] == "wrong_shape"


def test_check_names_the_bessel_correction_in_an_unbiased_batchnorms_dx(client):
    request = norm_network(9, "numpy", "flat", "batchnorm", variance="unbiased")
    dx = reference(request)["layers"][1]["dx"]
    results = check(client, request, {"dx": (dx + 0.5).tolist()})
    assert "N / (N - 1) * x_hat * sum(dz * x_hat)" in results["layers.1.dx"]["message"]


def test_check_grades_a_dgamma_of_the_wrong_shape_as_wrong_shape(client):
    request = norm_network(9, "columns", "column", "batchnorm")
    results = check(client, request, {"dgamma": [[1.0, 2.0]]})
    assert results["layers.1.dgamma"]["diagnosis"] == "wrong_shape"


def test_check_refuses_a_dw_submitted_for_a_batchnorm_layer(client):
    request = norm_network(9, "numpy", "flat", "batchnorm")
    problem = {k: v for k, v in request.items() if k != "include"}
    body = problem | {"submission": {"layers": [None, {"dW": [[1.0]]}, None]}}
    errors = errors_of(client, body, "/v1/check")
    assert errors == {
        "submission.layers.1.dW": [
            "layer 1 is a batchnorm layer (its gradients are dgamma, dbeta), so it has no dW to "
            "check; leave submission.layers.1.dW out."
        ]
    }


# -- the document and the cost model ------------------------------------------------------------


def test_the_document_describes_each_norm_as_a_layer_type(client):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    for norm in ("Batchnorm", "Layernorm"):
        schema = schemas[f"{norm}Layer"]
        assert schema["properties"]["type"]["enum"] == [norm.lower()]
        assert {"type", "gamma", "beta"} <= set(schema["required"])
    assert set(schemas["BatchnormLayer"]["properties"]) >= {
        "eps",
        "mode",
        "variance",
        "momentum",
        "running_mean",
        "running_var",
        "activation",
    }


def test_the_cost_model_prices_a_norm_layer_from_its_shape():
    from service.core.cost import LAYER_COSTS, LayerShape

    for kind in ("batchnorm", "layernorm"):
        cost = LAYER_COSTS[kind](1024, LayerShape(kind, 512, 512, ((512,), (512,)), "relu"))
        assert cost.kept >= 3 * 1024 * 512  # z, a and x_hat
        assert cost.gradients >= 1024 * 512 + 2 * 512  # dz, dgamma, dbeta
        assert cost.flops > cost.forward_flops >= 7 * 1024 * 512
