"""Every computing endpoint runs under GRADIENT_TIME_BUDGET_SECONDS (issue 11), checked
between the layers of every forward and backward pass."""

from __future__ import annotations

import numpy as np
import pytest

from service import create_app
from service.core import LimitExceeded, Problem, compute_gradients, dense_layer
from service.core.budget import Deadline
from tests.memory_cases import network


def exercise(n_sizes: int, width: int) -> dict:
    return {
        "seed": 1,
        "layer_sizes": [width] * n_sizes,
        "activations": ["tanh"] * (n_sizes - 1),
        "loss": "mse",
    }


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
            dense_layer(np.ones((n_in, n_out)), np.zeros(n_out), "tanh")
            for n_in, n_out in [(3, 4), (4, 4), (4, 4), (4, 1)]
        ),
        loss="mse",
    )
    unlimited = CountingDeadline(10**9)
    compute_gradients(problem, deadline=unlimited)
    assert unlimited.made == 8  # 4 layers forward, 4 backward
    with pytest.raises(LimitExceeded):
        compute_gradients(problem, deadline=CountingDeadline(5))  # ends in the backward pass
