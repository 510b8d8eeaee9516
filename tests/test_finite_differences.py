"""The core's analytic gradients agree with central finite differences of its own loss.

A second oracle, independent of PyTorch: nudge every weight and bias by ±h
and compare (L(p + h) - L(p - h)) / 2h with the analytic dW and db.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from service.core import Problem, compute_gradients, dense_layer, neuron_terms
from service.core.neuron import NeuronProblem
from tests.problems import HIDDEN_ACTIVATIONS, LOSSES, random_targets

STEP = 1e-6


def random_problem(seed: int, loss: str, reduction: str, l2: float, activations) -> Problem:
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(1, 5)) for _ in range(len(activations) + 1)]
    if loss == "cross_entropy":
        widths[-1] = max(widths[-1], 2)
    batch = int(rng.integers(1, 5))
    layers = tuple(
        dense_layer(
            weights=rng.normal(scale=1 / np.sqrt(widths[i]), size=(widths[i], widths[i + 1])),
            biases=rng.normal(scale=0.5, size=widths[i + 1]),
            activation=act,
        )
        for i, act in enumerate(activations)
    )
    return Problem(
        inputs=rng.normal(size=(batch, widths[0])),
        targets=random_targets(rng, loss, batch, widths[-1]),
        layers=layers,
        loss=loss,
        reduction=reduction,
        l2=l2,
    )


def numerical_gradient(problem: Problem, layer: int, attribute: str) -> np.ndarray:
    original = problem.layers[layer].params[attribute]
    gradient = np.zeros_like(original)
    for index in np.ndindex(original.shape):
        losses = []
        for sign in (1, -1):
            nudged = original.copy()
            nudged[index] += sign * STEP
            layers = list(problem.layers)
            layers[layer] = problem.layers[layer].with_params(**{attribute: nudged})
            losses.append(
                compute_gradients(Problem(**{**vars(problem), "layers": tuple(layers)})).loss
            )
        gradient[index] = (losses[0] - losses[1]) / (2 * STEP)
    return gradient


def output_activation(loss: str, fallback: str) -> str:
    return {"bce": "sigmoid", "cross_entropy": "softmax"}.get(loss, fallback)


@pytest.mark.parametrize(
    ("loss", "reduction", "l2", "activation"),
    [
        pytest.param(*combo, id="-".join(map(str, combo)))
        for combo in itertools.product(LOSSES, ("mean", "sum"), (0.0, 0.1), HIDDEN_ACTIVATIONS)
    ],
)
def test_analytic_gradients_match_central_differences(loss, reduction, l2, activation):
    activations = (activation, activation, output_activation(loss, activation))
    seed = LOSSES.index(loss) * 100 + HIDDEN_ACTIVATIONS.index(activation)
    problem = random_problem(seed, loss, reduction, l2, activations)
    analytic = compute_gradients(problem)
    for i, result in enumerate(analytic.layers):
        for attribute, grad in (("weights", result.dW), ("biases", result.db)):
            np.testing.assert_allclose(
                grad,
                numerical_gradient(problem, i, attribute),
                rtol=1e-5,
                atol=1e-7,
                err_msg=f"layers.{i}.{attribute}",
            )


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "softplus", "leaky_relu"])
@pytest.mark.parametrize("loss", ["mse", "half_mse", "bce"])
def test_neuron_analytic_and_numerical_bias_derivatives_agree(activation, loss):
    if loss == "bce":
        activation = "sigmoid"
    terms = neuron_terms(
        NeuronProblem(
            x=np.array([0.7, -1.2]),
            w=np.array([0.3, 0.4]),
            b=0.25,
            y=0.8 if loss == "bce" else 1.5,
            activation=activation,
            loss=loss,
        )
    )
    assert terms.numerical_dL_db == pytest.approx(terms.dL_db, rel=1e-7, abs=1e-10)
    assert terms.dL_db == pytest.approx(terms.dL_da * terms.da_dz * terms.dz_db, rel=1e-12)
