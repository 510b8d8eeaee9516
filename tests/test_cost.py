"""Issue 11, findings 1 and 2: no small request may take gigabytes.

Every request is priced from its shapes before anything is allocated
(service/core/cost.py), and refused over GRADIENT_MAX_REQUEST_BYTES with a 422
that says what is too big, by how much, and the fix; a refusal costs under
100 ms and 50 MB.  That the price bounds what really happens is
tests/test_memory_bound.py.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import orjson
import pytest

from schemas.fields import Whole
from service import create_app
from service.config import Config
from service.core.cost import (
    LAYER_COSTS,
    PARSE_BODY,
    PARSED_LIST,
    PARSED_NUMBER,
    NetworkShape,
    dense_shape,
    list_count,
)
from service.core.layers import KINDS
from service.core.problem import Problem, dense_layer
from service.core.request_costs import COMPARE_FLOPS, gradients_cost, grading_cost
from service.routes import autograder
from tests.memory_cases import LIMIT, estimate, network, thin_wide

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


def test_the_grader_is_priced_with_every_mistaken_pass_it_computes_and_the_one_it_holds(client):
    sizes = [8, 256, 256, 2]
    body = network(sizes, 4000, ["sigmoid", "sigmoid", "sigmoid"], loss="bce")
    assert client.post("/v1/gradients", json=body).status_code == 200  # one pass fits
    submission = {"layers": [None, None, {"db": [0.0, 0.0]}]}
    check = body | {"submission": submission}
    # its memory: the reference and the one mistaken pass alive beside it
    cost = estimate(client, "/v1/check", orjson.dumps(check))
    kept = [part.what for part in cost.parts if "activations and gradients" in part.what]
    assert kept and all(what.endswith("kept for each of 2 backward passes)") for what in kept)
    assert cost.bytes <= LIMIT  # fits; with all 42 passes held it did not
    # its work: all 42 passes (issue 13: 1/N placements), each compared with the submission
    net = NetworkShape.of_sizes(4000, sizes, ["sigmoid"] * 3)
    flops = 42 * net.flops() + COMPARE_FLOPS * 2 * 42
    problem, _, _ = refusal(client, "/v1/check", check)
    assert problem["errors"]["_request"] == [
        f"the forward and backward pass need about {flops:,} floating-point operations, over "
        "this service's limit of 20,000,000,000 (GRADIENT_MAX_FLOPS); send a smaller batch or "
        "network."
    ]


def test_the_grader_keeps_two_passes_dx_and_a_rerun_forward_only_if_a_mistake_needs_one():
    net = NetworkShape.of_sizes(100, [30, 20, 5], ["tanh", "identity"])
    plain = grading_cost(net, 42, 0, [(0, "dW")])
    rerun = grading_cost(net, 42, 0, [(0, "dW")], reruns_forward=True)
    with_dx = grading_cost(net, 42, 0, [(0, "dx")])

    (dx,) = [part for part in with_dx.parts if "dx" in part.what]
    assert dx.what == "every layer's dx, kept by 2 passes at a time"
    assert dx.bytes == 8 * 2 * 100 * (30 + 20)
    assert rerun.bytes - plain.bytes == 8 * sum(cost.kept for cost in net.costs())
    assert plain.flops == rerun.flops == with_dx.flops == 42 * net.flops()


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


# -- issue 14, first step: every layer kind prices itself; bias-free layers and dx -------------


def test_every_layer_kind_has_its_cost_entry():
    assert (
        set(LAYER_COSTS)
        == set(KINDS)
        == {
            *("dense", "batchnorm", "layernorm", "dropout"),
            *("conv2d", "maxpool2d", "avgpool2d", "flatten", "groupnorm"),
        }
    )


def test_a_bias_free_layer_is_priced_without_its_bias_and_dx_with_its_arrays():
    problem = Problem(
        inputs=np.zeros((100, 30)),
        targets=None,
        layers=(
            dense_layer(np.zeros((30, 20)), None, "relu"),
            dense_layer(np.zeros((20, 5)), None, "tanh"),
        ),
        loss=None,
        upstream=np.zeros((100, 5)),
    )
    net = NetworkShape.of(problem)
    assert net.layers == (
        dense_shape(30, 20, "relu", bias=False),
        dense_shape(20, 5, "tanh", bias=False),
    )
    assert net.parameters() == 30 * 20 + 20 * 5
    plain, with_dx = gradients_cost(net, ("a",)), gradients_cost(net, ("a", "dx"))
    dx_numbers = 100 * (30 + 20)
    assert with_dx.bytes - plain.bytes >= 8 * dx_numbers + 25 * dx_numbers
    assert any("every layer's dx" in part.what for part in with_dx.parts)


def test_a_request_is_priced_at_its_parse_when_its_lists_outweigh_its_computation():
    # inputs and targets in rows of one number (100,002 lists), a weight and a bias
    net = NetworkShape.of_sizes(50_000, [1, 1], ["identity"])
    body = 2 * 2**20
    cost = gradients_cost(net, include=(), body=body)
    (part,) = cost.parts
    assert part.what.startswith("parsing the request's body (2,097,152 bytes: 100,002 numbers")
    assert (
        cost.bytes
        == part.bytes
        == int(PARSE_BODY * body) + (PARSED_NUMBER + 8) * 100_002 + PARSED_LIST * 100_006
    )
    # long rows: the computation is the larger peak, its parts as before
    wide = gradients_cost(NetworkShape.of_sizes(500, [200, 200], ["tanh"]), body=body)
    assert not any(p.what.startswith("parsing") for p in wide.parts)
    assert wide.bytes == sum(p.bytes for p in wide.parts)


def test_an_array_is_priced_as_the_most_lists_its_layouts_could_take():
    assert list_count((5,)) == 1
    assert list_count((5, 1)) == 6 == list_count((1, 5))  # a bias as a column, or a row
    assert list_count((3, 7)) == 8 == list_count((7, 3))
    assert list_count((10, 1, 1, 1)) == 31
