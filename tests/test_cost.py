"""Issue 11, findings 1 and 2: no small request may take gigabytes, and none may run unbounded.

Every request is priced from its shapes before anything is allocated
(service/core/cost.py).  These tests hold the price to what really happens: in
this process (tracemalloc sees NumPy's and the JSON libraries' allocations) and
in a real gunicorn worker (its peak RSS, /proc/<pid>/status VmHWM).
"""

from __future__ import annotations

import time
import tracemalloc
from typing import NamedTuple

import numpy as np
import orjson
import pytest

from schemas.binary import encode
from schemas.fields import Whole
from service import allocator, create_app
from service.config import Config
from service.core import Layer, LimitExceeded, Problem, compute_gradients
from service.core.activations import ACTIVATIONS
from service.core.budget import Deadline
from service.core.cost import NetworkShape, passes_parts
from service.core.losses import LOSSES
from service.core.mistakes import passes_needed, variants
from service.core.network import forward
from service.routes import autograder
from tests import memory_cases
from tests.memory_cases import (
    LIMIT,
    SIZES,
    Case,
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
    return create_app({"RATELIMIT_ENABLED": False}).test_client()


def refusal(client, path: str, body: dict) -> tuple[dict, float, int]:
    """The 422 problem document, and the fewest seconds and the peak bytes a refusal cost."""
    raw = orjson.dumps(body)
    seconds = []
    for _ in range(3):  # the fewest of three: a busy machine only ever adds time
        started = time.perf_counter()
        response = client.post(path, data=raw, content_type="application/json")
        seconds.append(time.perf_counter() - started)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        client.post(path, data=raw, content_type="application/json")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return response.get_json(), min(seconds), peak


# -- finding 1: the thin-wide network --------------------------------------------------------


def test_the_thin_wide_network_of_finding_1_is_refused_with_its_size_and_the_limit(client):
    # inputs (3000, 1), layers (1, 3000) -> (3000, 1): a 321 KB body, 9 million numbers per
    # activation array. Before, a worker went to 835 MB on such a body.
    body = thin_wide(3000)
    assert len(orjson.dumps(body)) < 400_000
    problem, seconds, peak = refusal(client, "/v1/gradients", body)
    assert problem["type"] == "urn:gradient-service:problem:limit-exceeded"
    assert problem["errors"] == {
        "_request": [
            "the computation would hold about 1.4 GiB (the largest part: the answer (9,012,001 "
            "numbers as JSON text, about 25 bytes each), 859 MiB), 5.8x this service's limit of "
            '256 MiB (GRADIENT_MAX_REQUEST_BYTES); ask for "encoding": "base64" (11 bytes a '
            'number, not 25) or fewer arrays ("include").'
        ]
    }
    assert seconds < 0.1, f"the refusal took {seconds * 1000:.0f} ms"
    assert peak < 50 * MiB, f"the refusal took {peak / MiB:.0f} MiB"


def test_without_an_answer_to_write_the_activations_are_what_is_named(client):
    body = thin_wide(3000) | {"include": [], "encoding": "base64"}
    problem, _, _ = refusal(client, "/v1/gradients", body)
    assert problem["errors"]["_request"] == [
        "the computation would hold about 619 MiB (the largest part: the temporaries of layer 0's "
        "step (6 arrays of batch 3,000 x 3,000 units and more), 412 MiB), 2.4x this service's "
        "limit of 256 MiB (GRADIENT_MAX_REQUEST_BYTES); send a smaller batch or narrower layers."
    ]


def test_the_grader_is_priced_with_every_mistaken_pass_it_may_hold(client):
    sizes = [8, 256, 256, 2]
    body = network(sizes, 4000, ["sigmoid", "sigmoid", "sigmoid"], loss="bce")
    assert client.post("/v1/gradients", json=body).status_code == 200  # one pass fits
    submission = {"layers": [None, None, {"db": [0.0, 0.0]}]}
    problem, _, _ = refusal(client, "/v1/check", body | {"submission": submission})
    message = problem["errors"]["_request"][0]
    assert "kept for each of 20 backward passes" in message
    assert "GRADIENT_MAX_REQUEST_BYTES" in message


def test_a_neuron_with_millions_of_inputs_is_refused_naming_its_answer(client):
    body = {
        "x": [1.0] * 1_500_000,
        "w": [1.0] * 1_500_000,
        "b": 0.0,
        "y": 1.0,
        "activation": "sigmoid",
        "loss": "mse",
    }
    response = client.post("/v1/neuron", json=body)
    assert response.status_code == 422
    assert response.get_json()["errors"]["_request"] == [
        "the computation would hold about 518 MiB (the largest part: the answer (3,000,002 "
        "numbers as JSON text, about 25 bytes each), 415 MiB), 2.0x this service's limit of "
        "256 MiB (GRADIENT_MAX_REQUEST_BYTES); send fewer inputs, curve_points or steps."
    ]


def test_the_limit_is_read_from_the_environment_and_a_lower_one_refuses_sooner():
    limits = Config.from_env({"GRADIENT_MAX_REQUEST_BYTES": "1_048_576"})["GRADIENT_LIMITS"]
    assert limits.max_request_bytes == MiB
    assert Config.from_env({})["GRADIENT_LIMITS"].max_request_bytes == 256 * MiB
    with pytest.raises(ValueError, match="GRADIENT_MAX_REQUEST_BYTES must be positive"):
        Config.from_env({"GRADIENT_MAX_REQUEST_BYTES": "0"})
    client = create_app({"GRADIENT_LIMITS": limits}).test_client()
    body = {"seed": 1, "layer_sizes": [64, 64, 1], "activations": ["tanh", "identity"]}
    response = client.post("/v1/exercises", json=body | {"loss": "mse", "batch_size": 256})
    assert response.get_json()["errors"]["_request"] == [
        "the computation would hold about 4 MiB (the largest part: the answer (41,730 numbers as "
        "JSON text, about 25 bytes each), 3 MiB), 4.3x this service's limit of 1 MiB "
        "(GRADIENT_MAX_REQUEST_BYTES); ask for a smaller batch_size, or fewer and narrower layers."
    ]


# -- finding 2: /v1/exercises checks before it generates --------------------------------------


def exercise(n_sizes: int, width: int = 1024, batch: int = 4) -> dict:
    return {
        "seed": 1,
        "layer_sizes": [width] * n_sizes,
        "activations": ["tanh"] * (n_sizes - 1),
        "loss": "mse",
        "batch_size": batch,
    }


@pytest.fixture
def never_generated(monkeypatch):
    def generate(*args, **kwargs):
        raise AssertionError("the exercise was generated before its limits were checked")

    monkeypatch.setattr(autograder, "generate", generate)


def test_finding_2_150_layer_sizes_are_refused_before_anything_is_generated(
    client, never_generated
):
    problem, seconds, peak = refusal(client, "/v1/exercises", exercise(150))
    assert problem["errors"] == {
        "layer_sizes": ["149 layers exceed this service's limit of 64 (GRADIENT_MAX_LAYERS)."]
    }
    assert seconds < 0.1 and peak < 50 * MiB


def test_finding_2_3000_layer_sizes_are_refused_before_any_size_is_read(client, monkeypatch):
    read = []
    monkeypatch.setattr(
        Whole, "_deserialize", lambda self, value, *_, **__: read.append(value) or value
    )
    problem, seconds, peak = refusal(client, "/v1/exercises", exercise(3000))
    assert problem["errors"] == {
        "layer_sizes": ["got 3,000 sizes; at most 1,025 are accepted."],
        "activations": ["got 2,999 activations; at most 1,024 are accepted."],
    }
    assert set(read) == {1, 4}  # the seed and the batch size, never one of the sizes
    assert seconds < 0.1 and peak < 50 * MiB


def test_an_exercise_too_large_to_hold_is_refused_before_it_is_generated(client, never_generated):
    problem, _, peak = refusal(client, "/v1/exercises", exercise(5, width=512, batch=1024))
    assert problem["errors"]["_request"][0].startswith("the computation would hold about 383 MiB")
    assert "ask for a smaller batch_size, or fewer and narrower layers" in problem["detail"]
    assert peak < 50 * MiB


# -- the estimate is an upper bound ------------------------------------------------------------


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
            Layer(rng.normal(size=(n_in, n_out)) / n_in**0.5, rng.normal(size=n_out), act)
            for n_in, n_out, act in zip(sizes[:-1], sizes[1:], [activation, activation, output])
        ),
        loss=loss,
        l2=0.1,
    )
    net = NetworkShape.of(problem)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with np.errstate(all="ignore"):
            fwd = forward(problem)
            held = [compute_gradients(problem, fwd), *(v.result for v in variants(problem, fwd))]
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert len(held) <= passes_needed(problem)
    estimate = sum(part.bytes for part in passes_parts(net, passes_needed(problem)))
    assert peak <= estimate, f"{peak / MiB:.1f} MiB held, {estimate / MiB:.1f} MiB estimated"


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
    freed memory it keeps (service/allocator.py) + that; a refusal adds under 50 MiB."""
    url, server = memory_cases.start_worker()
    try:
        (worker,) = memory_cases.workers(server.pid)
        idle = memory_cases.status_kib(worker, "VmRSS") / 1024
        names = memory_cases.ORDER
        figures = memory_cases.rss_peaks(url, worker, [case(name) for name in names])
        refused = Case("finding 1", "/v1/gradients", orjson.dumps(thin_wide(3000)))
        ((before_refusal, after_refusal),) = memory_cases.rss_peaks(url, worker, [refused], 422)
    finally:
        from tests.conftest import stop_server

        stop_server(server)
    first, (fresh, peak) = names[0], figures[0]
    assert peak - fresh <= traced(client, case(first)).estimate.bytes / MiB  # a fresh worker
    bound = idle + (allocator.TRIM_THRESHOLD + LIMIT) / MiB
    for name, (before, peak) in zip(names, figures):
        assert peak - before <= LIMIT / MiB, f"{name}: {before:.0f} -> {peak:.0f} MiB"
        assert peak <= bound, f"{name}: {peak:.0f} MiB, over {bound:.0f}"
    assert after_refusal - before_refusal < 50


# -- the time budget -------------------------------------------------------------------------

BUDGETED = [
    ("/v1/gradients", network([30, 30, 30, 1], 50)),
    (
        "/v1/check",
        {
            **network([30, 30, 1], 50),
            "submission": {"layers": [None, {"db": [1.0]}]},
        },
    ),
    ("/v1/exercises", exercise(4, width=30)),
    (
        "/v1/neuron",
        {
            "x": [1.0, 2.0],
            "w": [0.5, 0.5],
            "b": 0.0,
            "y": 1.0,
            "activation": "tanh",
            "loss": "mse",
            "curve_points": 100,
            "steps": 100,
        },
    ),
]


@pytest.mark.parametrize(("path", "body"), BUDGETED, ids=[path for path, _ in BUDGETED])
def test_every_computing_endpoint_ends_at_the_time_budget_with_a_422_naming_it(path, body):
    slow = create_app({"GRADIENT_TIME_BUDGET_SECONDS": 1e-9}).test_client()
    response = slow.post(path, json=body)
    assert response.status_code == 422
    assert response.get_json()["errors"] == {
        "_request": [
            "the computation ran past this service's time budget of 1e-09 s "
            "(GRADIENT_TIME_BUDGET_SECONDS); send a smaller problem."
        ]
    }
    assert create_app().test_client().post(path, json=body).status_code == 200


class CountingDeadline(Deadline):
    """A budget spent after ``checks`` checks, which remembers how many were made."""

    def __init__(self, checks: int):
        super().__init__(None)
        self.checks, self.made = checks, 0

    def check(self) -> None:
        self.made += 1
        if self.made > self.checks:
            raise LimitExceeded("_request", "spent")


def test_the_budget_is_checked_before_every_layer_of_both_passes():
    problem = Problem(
        inputs=np.ones((2, 3)),
        targets=np.ones((2, 1)),
        layers=tuple(
            Layer(np.ones((n_in, n_out)), np.zeros(n_out), "tanh")
            for n_in, n_out in [(3, 4), (4, 4), (4, 4), (4, 1)]
        ),
        loss="mse",
    )
    unlimited = CountingDeadline(10**9)
    compute_gradients(problem, deadline=unlimited)
    assert unlimited.made == 8  # 4 layers forward, 4 backward
    with pytest.raises(LimitExceeded):
        compute_gradients(problem, deadline=CountingDeadline(5))  # ends in the backward pass
