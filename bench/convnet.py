"""CS231n's ThreeLayerConvNet as the conv benchmark sends it: numbers, request, torch pass.

conv FILTERS KERNELxKERNEL pad PAD stride 1 - relu - POOLxPOOL max pool stride POOL -
affine HIDDEN - relu - affine CLASSES - softmax over class labels, NCHW, the numpy
convention (dense weights (n_in, n_out)), float64.  Shared by bench.conv (speed),
bench.conv_naive (the loops) and bench.conv_memory (a worker's peak).
"""

from __future__ import annotations

import base64

import numpy as np
from marshmallow import ValidationError

from schemas import GradientsRequestSchema
from schemas.layers import LAYER_TYPES
from service.core import Problem
from service.core.layers import KINDS

BATCH, NAIVE_BATCH = 50, 2
CHANNELS, SIZE = 3, 32
FILTERS, KERNEL, PAD = 32, 7, 3
POOL = 2
HIDDEN, CLASSES = 100, 10
FLAT = FILTERS * (SIZE // POOL) ** 2
NEEDED = ("conv2d", "maxpool2d", "flatten")
MiB = 2**20
NETWORK = (
    f"conv {FILTERS} {KERNEL}x{KERNEL} pad {PAD} relu - {POOL}x{POOL} max pool - "
    f"{HIDDEN} relu - {CLASSES} softmax"
)


class Unavailable(Exception):
    """The benchmark cannot run here; the message is one line."""


def arrays(batch: int = BATCH, seed: int = 0) -> dict[str, np.ndarray]:
    """The network's numbers, NCHW and the numpy convention (dense weights (n_in, n_out))."""
    rng = np.random.default_rng(seed)
    fan_in = CHANNELS * KERNEL * KERNEL
    return {
        "x": rng.normal(size=(batch, CHANNELS, SIZE, SIZE)),
        "y": rng.integers(0, CLASSES, size=batch),
        "W1": rng.normal(scale=1 / np.sqrt(fan_in), size=(FILTERS, CHANNELS, KERNEL, KERNEL)),
        "b1": rng.normal(scale=0.1, size=FILTERS),
        "W2": rng.normal(scale=1 / np.sqrt(FLAT), size=(FLAT, HIDDEN)),
        "b2": rng.normal(scale=0.1, size=HIDDEN),
        "W3": rng.normal(scale=1 / np.sqrt(HIDDEN), size=(HIDDEN, CLASSES)),
        "b3": rng.normal(scale=0.1, size=CLASSES),
    }


def first(a: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The same network on the batch's first ``n`` images."""
    return {**a, "x": a["x"][:n], "y": a["y"][:n]}


def _binary(array: np.ndarray) -> dict:
    data = np.ascontiguousarray(array, dtype="<f8")
    return {
        "dtype": "float64",
        "shape": list(data.shape),
        "data": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def body(a: dict[str, np.ndarray], binary: bool = False) -> dict:
    """The /v1/gradients body a client sends (binary: base64 arrays and include [])."""
    array = _binary if binary else (lambda value: value.tolist())
    request = {
        "inputs": array(a["x"]),
        "targets": a["y"].tolist(),
        "loss": "cross_entropy",
        "layers": [
            {
                "type": "conv2d",
                "weights": array(a["W1"]),
                "biases": array(a["b1"]),
                "stride": 1,
                "pad": PAD,
                "activation": "relu",
            },
            {"type": "maxpool2d", "pool": POOL, "stride": POOL},
            {"type": "flatten"},
            {"weights": array(a["W2"]), "biases": array(a["b2"]), "activation": "relu"},
            {"weights": array(a["W3"]), "biases": array(a["b3"]), "activation": "softmax"},
        ],
    }
    if binary:
        request |= {"encoding": "base64", "include": []}
    return request


def load(request_body: dict) -> Problem:
    """The core's Problem, through the service's own request schema."""
    missing = [k for k in NEEDED if k not in LAYER_TYPES or k not in KINDS]
    if missing:
        raise Unavailable(f"image layer kinds not available: {', '.join(missing)}")
    try:
        return GradientsRequestSchema().load(request_body).problem
    except ValidationError as error:
        message = f"the service refused the benchmark's request: {error.messages}"
        raise Unavailable(message[:500]) from None


class TorchAutograd:
    """The same network in PyTorch float64, on one thread; call it for one pass."""

    def __init__(self, a: dict[str, np.ndarray]):
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.x = torch.from_numpy(a["x"])
        self.y = torch.from_numpy(a["y"]).long()
        self.params = {
            name: torch.tensor(a[name], requires_grad=True)
            for name in ("W1", "b1", "W2", "b2", "W3", "b3")
        }
        self.loss = None

    def __call__(self) -> None:
        F = self.torch.nn.functional
        p = self.params
        for tensor in p.values():
            tensor.grad = None
        conv = F.relu(F.conv2d(self.x, p["W1"], p["b1"], stride=1, padding=PAD))
        pooled = F.max_pool2d(conv, POOL, POOL).reshape(self.x.shape[0], -1)
        hidden = F.relu(pooled @ p["W2"] + p["b2"])
        self.loss = F.cross_entropy(hidden @ p["W3"] + p["b3"], self.y)
        self.loss.backward()

    def gradients(self) -> dict[str, object]:
        self()
        p = {name: tensor.grad.numpy() for name, tensor in self.params.items()}
        return {
            "loss": self.loss.item(),
            "0.dW": p["W1"],
            "0.db": p["b1"],
            "3.dW": p["W2"],
            "3.db": p["b2"],
            "4.dW": p["W3"],
            "4.db": p["b3"],
        }
