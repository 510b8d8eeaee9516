"""The cost model's estimate is an upper bound of what requests really hold (issue 11).

In this process, tracemalloc (which sees NumPy's and the JSON libraries' allocations)
from the cost check to the written answer; in a real gunicorn worker, its peak RSS
(/proc/<pid>/status VmHWM).  The cases at the bound are in tests/memory_cases.py.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient

from schemas.binary import encode
from service import create_app
from service.core import Layer, Problem, dense_layer
from service.core.activations import ACTIVATIONS
from service.core.losses import LOSSES
from service.operations import allocator
from tests import memory_cases
from tests.conftest import stop_server
from tests.memory_cases import (
    LIMIT,
    SIZES,
    Case,
    assert_every_pass_within_estimate,
    case,
    deep_narrow,
    fits,
    network,
    thin_wide,
    traced,
    wrong_submission,
)

MiB = 2**20


@pytest.fixture
def client():
    """A plain test client: the contract gate (tests/contract.py) parses every answer it
    checks, and tracemalloc would count that as the service's memory."""
    app = create_app({"RATELIMIT_ENABLED": False})
    app.test_client_class = FlaskClient
    return app.test_client()


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_pass_holds_less_than_its_estimate(activation, loss):
    """The forward pass, the backward pass and every mistaken pass of the autograder, held
    at once, for every activation and loss: within the model's kept arrays and temporaries."""
    rng = np.random.default_rng(0)
    output = {"bce": "sigmoid", "cross_entropy": "softmax"}.get(loss, activation)
    sizes, batch = [20, 300, 300, 40], 400
    targets = rng.uniform(size=(batch, sizes[-1]))
    if loss == "cross_entropy":
        targets /= targets.sum(axis=1, keepdims=True)
    problem = Problem(
        inputs=rng.normal(size=(batch, sizes[0])),
        targets=targets,
        layers=tuple(
            dense_layer(rng.normal(size=(n_in, n_out)) / n_in**0.5, rng.normal(size=n_out), act)
            for n_in, n_out, act in zip(sizes[:-1], sizes[1:], [activation, activation, output])
        ),
        loss=loss,
        l2=0.1,
    )
    assert_every_pass_within_estimate(problem)


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("batchnorm", {}),
        ("batchnorm", {"variance": "unbiased", "running": True}),
        ("batchnorm", {"mode": "eval", "running": True}),
        ("layernorm", {}),
    ],
    ids=["batchnorm-train", "batchnorm-unbiased-running", "batchnorm-eval", "layernorm"],
)
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_every_pass_of_a_norm_network_holds_less_than_its_estimate(kind, settings, activation):
    """dense -> norm -> dense -> norm -> dense: x_hat kept beside z and a, the running
    statistics updated, every mistaken pass held: within the model's estimate."""
    rng = np.random.default_rng(1)
    sizes, batch = [20, 300, 300, 40], 400
    settings = dict(settings)
    if settings.pop("running", False):
        settings |= {"running_mean": rng.normal(size=300), "running_var": rng.uniform(size=300)}
    layers = []
    for i, n_in in enumerate(sizes[:-1]):
        n_out, last = sizes[i + 1], i == len(sizes) - 2
        weights = rng.normal(size=(n_in, n_out)) / n_in**0.5
        layers.append(dense_layer(weights, rng.normal(size=n_out), "identity"))
        if not last:
            params = {"gamma": rng.normal(size=n_out), "beta": rng.normal(size=n_out)}
            layers.append(Layer(kind, params, activation, settings))
    problem = Problem(
        inputs=rng.normal(size=(batch, sizes[0])),
        targets=rng.normal(size=(batch, sizes[-1])),
        layers=tuple(layers),
        loss="mse",
        l2=0.1,
    )
    assert_every_pass_within_estimate(problem)


def columns(body: dict) -> dict:
    """A numpy-convention body in the columns convention: every array transposed."""
    transposed = {name: np.array(body[name]).T.tolist() for name in ("inputs", "targets")}
    layers = [
        {
            **layer,
            "weights": np.array(layer["weights"]).T.tolist(),
            "biases": [[b] for b in layer["biases"]],
        }
        for layer in body["layers"]
    ]
    return {**body, **transposed, "layers": layers, "convention": "columns"}


class Spread(NamedTuple):
    id: str
    path: str
    body: dict


SPREAD = [
    Spread("thin-wide", "/v1/gradients", thin_wide(600)),
    Spread("deep-narrow", "/v1/gradients", deep_narrow(1000)),
    Spread(
        "columns, every array, l2, a step",
        "/v1/gradients",
        columns(
            network(
                [50, 400, 30],
                300,
                ["relu", "softmax"],
                include=["z", "a", "dz"],
                l2=0.5,
                learning_rate=0.1,
            )
        ),
    ),
    Spread(
        "base64 both ways",
        "/v1/gradients",
        network([200, 300, 300, 5], 500, form=encode, encoding="base64", learning_rate=0.1),
    ),
    Spread("a column of samples", "/v1/gradients", network([1, 1], 50_000)),
    Spread("gradient check", "/v1/gradients", network([10, 40, 2], 500, gradient_check=True)),
    Spread(
        "every field wrong, revealed",
        "/v1/check",
        {
            **network([20, 100, 100, 3], 800, ["sigmoid", "tanh", "sigmoid"], loss="bce"),
            "submission": wrong_submission([20, 100, 100, 3], 800),
            "reveal": True,
        },
    ),
    Spread(
        "a one-hot exercise",
        "/v1/exercises",
        {
            "seed": 3,
            "layer_sizes": [300, 600, 1000],
            "activations": ["sigmoid", "softmax"],
            "loss": "cross_entropy",
            "batch_size": 400,
            "decimals": 2,
        },
    ),
    Spread(
        "a long neuron",
        "/v1/neuron",
        {
            "x": [0.5] * 50_000,
            "w": [0.001] * 50_000,
            "b": 0.1,
            "y": 1.0,
            "activation": "tanh",
            "loss": "mse",
            "curve_points": 401,
            "steps": 200,
        },
    ),
]


@pytest.mark.parametrize("spread", SPREAD, ids=[s.id for s in SPREAD])
def test_the_estimate_bounds_what_a_request_really_holds(client, spread):
    measured = traced(client, Case(spread.id, spread.path, orjson.dumps(spread.body)))
    assert measured.status == 200
    assert measured.view <= measured.estimate.bytes, (
        f"{measured.view / MiB:.1f} MiB held, {measured.estimate.bytes / MiB:.1f} MiB estimated"
    )


@pytest.mark.parametrize("spread", SPREAD, ids=[s.id for s in SPREAD])
def test_the_estimate_bounds_the_whole_request_its_body_parsed_included(client, spread):
    # the body's lists of Python floats are alive beside the body and, as the schema loads
    # them, their arrays: priced per number and per list (cost.parse_part), whatever else
    measured = traced(client, Case(spread.id, spread.path, orjson.dumps(spread.body)))
    assert measured.status == 200
    assert measured.whole <= measured.estimate.bytes, (
        f"{measured.whole / MiB:.1f} MiB held, {measured.estimate.bytes / MiB:.1f} MiB estimated"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SIZES))
def test_the_largest_request_of_each_kind_holds_less_than_its_estimate(client, name):
    # the largest: within the limit, and 3% more is refused
    assert not fits(client, name, SIZES[name] * 103 // 100 + 1)
    measured = traced(client, case(name))
    assert measured.status == 200
    assert measured.view <= measured.estimate.bytes <= LIMIT


# -- a real worker -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_at_its_peak_stays_within_the_documented_bound(client):
    """A fresh worker grows by less than the request's estimate; each accepted request adds at
    most GRADIENT_MAX_REQUEST_BYTES to a worker's RSS, which stays under its idle RSS + the
    freed memory it keeps (service/operations/allocator.py) + that; a refusal adds under 50 MiB."""
    url, server = memory_cases.start_worker()
    try:
        (worker,) = memory_cases.workers(server.pid)
        idle = memory_cases.status_kib(worker, "VmRSS") / 1024
        names = memory_cases.ORDER
        figures = memory_cases.rss_peaks(url, worker, [case(name) for name in names])
        refused = Case("finding 1", "/v1/gradients", orjson.dumps(thin_wide(3000)))
        ((before_refusal, after_refusal),) = memory_cases.rss_peaks(url, worker, [refused], 422)
    finally:
        stop_server(server)
    first, (fresh, peak) = names[0], figures[0]
    assert peak - fresh <= traced(client, case(first)).estimate.bytes / MiB  # a fresh worker
    bound = idle + (allocator.TRIM_THRESHOLD + LIMIT) / MiB
    for name, (before, peak) in zip(names, figures):
        assert peak - before <= LIMIT / MiB, f"{name}: {before:.0f} -> {peak:.0f} MiB"
        assert peak <= bound, f"{name}: {peak:.0f} MiB, over {bound:.0f}"
    assert after_refusal - before_refusal < 50


#: The cases whose body is tens of MiB of JSON numbers: its parse is their worker's peak.
BODY_HEAVY = ["check", "gradients_every_array", "neuron"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BODY_HEAVY)
def test_a_fresh_worker_grows_by_less_than_the_estimate_of_a_body_of_numbers(client, name):
    """The largest /v1/check (31.7 MiB of numbers) grew a fresh worker by 173 to 179 MiB
    against its estimate of 169: orjson's document tree beside the parsed lists."""
    url, server = memory_cases.start_worker()
    try:
        (worker,) = memory_cases.workers(server.pid)
        ((fresh, peak),) = memory_cases.rss_peaks(url, worker, [case(name)])
    finally:
        stop_server(server)
    estimate = traced(client, case(name)).estimate.bytes / MiB
    assert peak - fresh <= estimate, f"{name}: grew {peak - fresh:.0f}, {estimate:.0f} estimated"
