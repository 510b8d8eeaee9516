"""Issue 14's speed target: a 784-512(batchnorm, relu)-10 network, batch 1024, with dropout.

    python -m bench.layers      (also the "layers" section of python -m bench.run)

The request is built as a client sends it, a JSON body in the numpy convention
with class labels (dense 784->512 identity, batchnorm + relu, dropout with an
explicit mask, dense 512->10 softmax, cross_entropy), and loaded with the
service's own request schema; the core (``compute_gradients`` of its Problem)
is timed alone, as bench.core times it. Against it, interleaved in one process:

- floor: the same computation written out by hand in NumPy, as CS231n's
  assignment 2 writes it: affine_forward/backward, batchnorm_forward and
  batchnorm_backward_alt (the compact dx), relu, inverted dropout
  (x * mask / keep_prob), softmax_loss with labels (mean over the batch);
- torch: PyTorch float64 autograd on one thread (F.batch_norm with
  training=True, relu, x * mask / keep_prob, F.cross_entropy).

Targets: core / floor <= 1.2 and core / torch <= 1.0.  Before anything is
timed, the three must give the same loss and gradients (dW, db of both dense
layers, dgamma, dbeta) within rtol 1e-9, with an absolute floor of 1e-13 times
the array's largest magnitude: db of the first layer is exactly zero in exact
arithmetic (batchnorm subtracts the batch mean), so it is rounding noise in
all three.

Each timed core call gets its own copy of the problem's layer settings, as each
request does: a kind may keep per-request work in them (dropout keeps
mask / keep_prob for the request's later passes), and a copy shared by every
call would let the core skip that work from the second call on.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import replace

# One BLAS thread, as bench.run and each gunicorn worker; set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from marshmallow import ValidationError

from schemas import GradientsRequestSchema
from schemas.layers import LAYER_TYPES
from service.core import Problem, compute_gradients
from service.core.layers import KINDS

from .timing import interleaved

BATCH = 1024
N_IN, HIDDEN, CLASSES = 784, 512, 10
KEEP_PROB = 0.8
EPS = 1e-5  # batchnorm's default, the service's and torch's
NEEDED = ("batchnorm", "dropout")
REPEATS, INNER = 11, 1
RTOL = 1e-9
#: core / floor and core / torch, at most (issue 14, "Speed")
FLOOR_TARGET, TORCH_TARGET = 1.2, 1.0
SECTION = "Layer kinds: batchnorm and dropout (issue 14)"
TARGETS = "core / NumPy and core / torch, batchnorm + dropout"


class Unavailable(Exception):
    """The benchmark cannot run here; the message is one line."""


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The network's numbers, canonical (numpy convention): data, labels, parameters, mask."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(BATCH, N_IN)),
        "y": rng.integers(0, CLASSES, size=BATCH),
        "W1": rng.normal(scale=1 / np.sqrt(N_IN), size=(N_IN, HIDDEN)),
        "b1": rng.normal(scale=0.1, size=HIDDEN),
        "gamma": rng.normal(loc=1.0, scale=0.1, size=HIDDEN),
        "beta": rng.normal(scale=0.1, size=HIDDEN),
        "mask": (rng.random((BATCH, HIDDEN)) < KEEP_PROB).astype(np.float64),
        "W2": rng.normal(scale=1 / np.sqrt(HIDDEN), size=(HIDDEN, CLASSES)),
        "b2": rng.normal(scale=0.1, size=CLASSES),
    }


def body(a: dict[str, np.ndarray]) -> dict:
    """The /v1/gradients body a client sends for these numbers (issue 14's contract)."""
    return {
        "inputs": a["x"].tolist(),
        "targets": a["y"].tolist(),
        "loss": "cross_entropy",
        "layers": [
            {"weights": a["W1"].tolist(), "biases": a["b1"].tolist(), "activation": "identity"},
            {
                "type": "batchnorm",
                "gamma": a["gamma"].tolist(),
                "beta": a["beta"].tolist(),
                "activation": "relu",
            },
            {"type": "dropout", "keep_prob": KEEP_PROB, "mask": a["mask"].astype(int).tolist()},
            {"weights": a["W2"].tolist(), "biases": a["b2"].tolist(), "activation": "softmax"},
        ],
    }


def load(request_body: dict) -> Problem:
    """The core's Problem, through the service's own request schema."""
    missing = [
        f"{kind!r} (not in {', '.join(where)})"
        for kind in NEEDED
        if (
            where := [
                name
                for name, registry in (
                    ("schemas.layers.LAYER_TYPES", LAYER_TYPES),
                    ("service.core.layers.KINDS", KINDS),
                )
                if kind not in registry
            ]
        )
    ]
    if missing:
        raise Unavailable(f"batchnorm/dropout layer kinds not available: {'; '.join(missing)}")
    try:
        return GradientsRequestSchema().load(request_body).problem
    except ValidationError as error:
        message = f"the service refused the benchmark's request: {error.messages}"
        raise Unavailable(message[:500]) from None


def fresh_copies(problem: Problem, n: int) -> list[Problem]:
    """``n`` problems sharing the arrays, each with its own copy of every layer's settings."""
    return [
        replace(
            problem,
            layers=tuple(replace(l, settings=copy.deepcopy(l.settings)) for l in problem.layers),
        )
        for _ in range(n)
    ]


def floor(a: dict[str, np.ndarray]) -> dict[str, object]:
    """CS231n's layers written out: the loss and every parameter's gradient."""
    x, y, mask, n = a["x"], a["y"], a["mask"], BATCH
    # affine_forward
    h = x @ a["W1"] + a["b1"]
    # batchnorm_forward, train mode
    mu = h.mean(axis=0)
    xc = h - mu
    std = np.sqrt((xc**2).mean(axis=0) + EPS)
    x_hat = xc / std
    bn = a["gamma"] * x_hat + a["beta"]
    # relu_forward, then inverted dropout_forward
    r = np.maximum(bn, 0.0)
    d = r * mask / KEEP_PROB
    # affine_forward, softmax_loss with labels
    s = d @ a["W2"] + a["b2"]
    shifted = s - s.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = -log_p[rows, y].mean()
    ds = np.exp(log_p)
    ds[rows, y] -= 1.0
    ds /= n
    # affine_backward (no dx into the inputs: nobody asks for it)
    dW2, db2 = d.T @ ds, ds.sum(axis=0)
    dd = ds @ a["W2"].T
    # dropout_backward, relu_backward
    dbn = dd * mask / KEEP_PROB
    dbn *= bn > 0
    # batchnorm_backward_alt
    dbeta = dbn.sum(axis=0)
    dgamma = (dbn * x_hat).sum(axis=0)
    dh = (a["gamma"] / std / n) * (n * dbn - dbeta - x_hat * dgamma)
    # affine_backward
    dW1, db1 = x.T @ dh, dh.sum(axis=0)
    return {
        "loss": loss,
        "0.dW": dW1,
        "0.db": db1,
        "1.dgamma": dgamma,
        "1.dbeta": dbeta,
        "3.dW": dW2,
        "3.db": db2,
    }


class TorchAutograd:
    """The same network in PyTorch float64, on one thread; call it for one pass."""

    def __init__(self, a: dict[str, np.ndarray]):
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.x, self.mask = torch.from_numpy(a["x"]), torch.from_numpy(a["mask"])
        self.y = torch.from_numpy(a["y"]).long()
        self.params = {
            name: torch.tensor(a[name], requires_grad=True)
            for name in ("W1", "b1", "gamma", "beta", "W2", "b2")
        }
        self.loss = None

    def __call__(self) -> None:
        F = self.torch.nn.functional
        p = self.params
        for tensor in p.values():
            tensor.grad = None
        h = self.x @ p["W1"] + p["b1"]
        bn = F.batch_norm(h, None, None, p["gamma"], p["beta"], training=True, eps=EPS)
        d = F.relu(bn) * self.mask / KEEP_PROB
        self.loss = F.cross_entropy(d @ p["W2"] + p["b2"], self.y)
        self.loss.backward()

    def gradients(self) -> dict[str, object]:
        self()
        p = {name: tensor.grad.numpy() for name, tensor in self.params.items()}
        return {
            "loss": self.loss.item(),
            "0.dW": p["W1"],
            "0.db": p["b1"],
            "1.dgamma": p["gamma"],
            "1.dbeta": p["beta"],
            "3.dW": p["W2"],
            "3.db": p["b2"],
        }


def core_gradients(problem: Problem) -> dict[str, object]:
    result = compute_gradients(problem)
    named = {
        f"{i}.{name}": value
        for i, out in enumerate(result.layers)
        for name, value in out.grads.items()
    }
    return {"loss": result.loss, **named}


def differences(reference: dict, other: dict, who: str) -> list[str]:
    """What ``other`` gets wrong against ``reference``, one short line each (none: the same)."""
    if reference.keys() != other.keys():
        return [f"{who} answers {sorted(other)}, expected {sorted(reference)}"]
    wrong = []
    for name, expected in reference.items():
        expected, actual = np.asarray(expected), np.asarray(other[name])
        if actual.shape != expected.shape:
            wrong.append(f"{who} {name}: shape {actual.shape}, expected {expected.shape}")
            continue
        atol = 1e-13 * max(1.0, float(np.max(np.abs(expected))))
        if not np.allclose(actual, expected, rtol=RTOL, atol=atol):
            error = np.max(np.abs(actual - expected) / (np.abs(expected) + atol))
            wrong.append(f"{who} {name}: relative error {error:.1e} > {RTOL:.0e}")
    return wrong


def run(report) -> None:
    a = arrays()
    try:
        problem = load(body(a))
    except Unavailable as why:
        report.unmeasured(TARGETS, str(why))
        return
    torch_pass, reference = TorchAutograd(a), floor(a)
    wrong = differences(reference, core_gradients(problem), "core")
    wrong += differences(reference, torch_pass.gradients(), "torch")
    if wrong:
        report.unmeasured(
            TARGETS,
            "not timed, the three disagree: " + "; ".join(wrong),
        )
        return
    problems = iter(fresh_copies(problem, 1 + REPEATS * INNER))
    stats = interleaved(
        {
            "core": lambda: compute_gradients(next(problems)),
            "floor": lambda: floor(a),
            "torch": torch_pass,
        },
        REPEATS,
        INNER,
    )
    name = f"{N_IN}-{HIDDEN}(batchnorm, relu, dropout)-{CLASSES}, batch {BATCH}"
    report.figure("same loss and gradients (rtol 1e-9)", "core, floor and torch agree")
    report.figure(f"core {name}", stats["core"])
    report.figure("hand-written NumPy (CS231n, batchnorm_backward_alt)", stats["floor"])
    report.figure("torch autograd float64, 1 thread", stats["torch"])
    report.ratio(
        "core / hand-written NumPy, batchnorm + dropout",
        stats["core"].median / stats["floor"].median,
        FLOOR_TARGET,
    )
    report.ratio(
        "core / torch autograd, batchnorm + dropout",
        stats["core"].median / stats["torch"].median,
        TORCH_TARGET,
    )


def main() -> int:
    from .report import run_section

    return run_section(SECTION, run)


if __name__ == "__main__":
    sys.exit(main())
