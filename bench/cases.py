"""The benchmark problems, as the core sees them and as a client sends them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.binary import encode
from service.core import Problem, dense_layer


@dataclass(frozen=True)
class Case:
    name: str
    sizes: tuple[int, ...]
    batch: int

    def problem(self, seed: int = 0) -> Problem:
        rng = np.random.default_rng(seed)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        layers = tuple(
            dense_layer(
                weights=rng.normal(scale=1 / np.sqrt(n_in), size=(n_in, n_out)),
                biases=rng.normal(scale=0.1, size=n_out),
                activation="relu" if i < len(pairs) - 1 else "identity",
            )
            for i, (n_in, n_out) in enumerate(pairs)
        )
        return Problem(
            inputs=rng.normal(size=(self.batch, self.sizes[0])),
            targets=rng.normal(size=(self.batch, self.sizes[-1])),
            layers=layers,
            loss="mse",
        )

    def request(self, binary: bool = False) -> dict:
        """The /v1/gradients body for this case, nested lists or base64 arrays."""
        problem = self.problem()
        form = encode if binary else np.ndarray.tolist
        body = {
            "inputs": form(problem.inputs),
            "targets": form(problem.targets),
            "layers": [
                {
                    "weights": form(layer.weights),
                    "biases": form(layer.biases),
                    "activation": layer.activation,
                }
                for layer in problem.layers
            ],
            "loss": "mse",
        }
        if binary:
            body["encoding"] = "base64"
        return body

    def flops(self) -> int:
        """Multiply-adds * 2 of one forward and backward pass (dW and the dz of inner layers)."""
        weights = sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        first = self.sizes[0] * self.sizes[1]
        return 2 * self.batch * (3 * weights - first)  # forward, dW, and dz except into the input


TINY = Case("tiny", (4, 8, 1), 4)
SMALL = Case("small", (2, 3, 1), 4)
MEDIUM = Case("medium", (784, 128, 10), 64)
LARGE = Case("large", (784, 512, 512, 10), 1024)
ALL = (TINY, SMALL, MEDIUM, LARGE)
