"""Seeded random requests: networks of 1 to 4 layers in any convention and bias shape."""

from __future__ import annotations

import numpy as np

HIDDEN_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "softmax")
OUTPUT_ACTIVATION = {"bce": "sigmoid", "cross_entropy": "softmax"}
CONVENTIONS = ("numpy", "torch", "columns")
LOSSES = ("mse", "half_mse", "bce", "cross_entropy")
BIAS_FORMS = {"numpy": ("flat", "row"), "torch": ("flat", "row"), "columns": ("column",)}


def bias(values: np.ndarray, form: str) -> list:
    if form == "flat":
        return values.tolist()
    if form == "row":
        return values.reshape(1, -1).tolist()
    return values.reshape(-1, 1).tolist()


def random_targets(rng: np.random.Generator, loss: str, batch: int, n_out: int) -> np.ndarray:
    if loss == "bce":
        y = rng.uniform(size=(batch, n_out))
        y[rng.uniform(size=y.shape) < 0.3] = 1.0  # some hard labels
        return y
    if loss == "cross_entropy":
        if rng.uniform() < 0.5:
            return np.eye(n_out)[rng.integers(n_out, size=batch)]  # one-hot
        return rng.dirichlet(np.ones(n_out), size=batch)  # soft labels
    return rng.normal(size=(batch, n_out))


def random_request(
    seed: int,
    *,
    convention: str = "numpy",
    loss: str = "mse",
    reduction: str = "mean",
    l2: float = 0.0,
    activations: tuple[str, ...] | None = None,
    bias_form: str | None = None,
    n_layers: int | None = None,
) -> dict:
    """A valid /v1/gradients request in the client's convention (canonical maths, then laid out)."""
    rng = np.random.default_rng(seed)
    n_layers = n_layers or int(rng.integers(1, 5))
    if activations is None:
        activations = tuple(rng.choice(HIDDEN_ACTIVATIONS) for _ in range(n_layers))
    activations = tuple(activations)[:n_layers]
    if loss in OUTPUT_ACTIVATION:
        activations = (*activations[:-1], OUTPUT_ACTIVATION[loss])
    batch = int(rng.integers(1, 7))
    widths = [int(rng.integers(1, 6)) for _ in range(n_layers + 1)]
    if loss == "cross_entropy":
        widths[-1] = max(widths[-1], 2)

    columns = convention == "columns"
    out_by_in = convention in ("torch", "columns")
    layers = []
    for i, activation in enumerate(activations):
        w = rng.normal(scale=1.0 / np.sqrt(widths[i]), size=(widths[i], widths[i + 1]))
        b = rng.normal(scale=0.5, size=widths[i + 1])
        form = bias_form or str(rng.choice(BIAS_FORMS[convention]))
        layers.append(
            {
                "weights": (w.T if out_by_in else w).tolist(),
                "biases": bias(b, form),
                "activation": str(activation),
            }
        )
    x = rng.normal(size=(batch, widths[0]))
    y = random_targets(rng, loss, batch, widths[-1])
    return {
        "inputs": (x.T if columns else x).tolist(),
        "targets": (y.T if columns else y).tolist(),
        "layers": layers,
        "loss": loss,
        "reduction": reduction,
        "convention": convention,
        "l2": l2,
    }


def gradient_check_request(batch: int) -> dict:
    """A gradient check of a 48-48-1 tanh network (2,401 parameters, each nudged twice): about
    a second of work at batch 64, far more than any short time budget at batch 2,048."""
    rng = np.random.default_rng(0)
    return {
        "inputs": rng.normal(size=(batch, 48)).tolist(),
        "targets": rng.normal(size=(batch, 1)).tolist(),
        "layers": [
            {
                "weights": rng.normal(size=(48, 48)).tolist(),
                "biases": [0.0] * 48,
                "activation": "tanh",
            },
            {
                "weights": rng.normal(size=(48, 1)).tolist(),
                "biases": [0.0],
                "activation": "identity",
            },
        ],
        "loss": "mse",
        "gradient_check": True,
    }


def post(client, request: dict, path: str = "/v1/gradients") -> dict:
    """A request that must succeed: its answer's JSON."""
    response = client.post(path, json=request)
    assert response.status_code == 200, response.get_json()
    return response.get_json()
