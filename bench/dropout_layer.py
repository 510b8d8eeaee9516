"""The dropout layer's own cost: its forward and backward (identity activation) at the
benchmark's shape, a dropout after the 512-unit relu layer at batch 1024, against CS231n's
dropout_forward / dropout_backward written out in NumPy; identity's backward as it was
(dL/da times an array of ones) and as it is (dL/da itself), interleaved in one run.  Then the
whole network, 784-512(relu)-dropout-10, against the same written out in NumPy.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m bench.dropout_layer
"""

from __future__ import annotations

import time

import numpy as np

from service.core import activations
from service.core.layers.dropout import DROPOUT, dropout_layer

BATCH, UNITS, KEEP_PROB, ROUNDS = 1024, 512, 0.8, 60


def main() -> None:
    rng = np.random.default_rng(0)
    x, dout = rng.normal(size=(BATCH, UNITS)), rng.normal(size=(BATCH, UNITS))
    D = (rng.random(x.shape) < KEEP_PROB).astype(float)
    now = activations.ACTIVATIONS["identity"]
    before = activations._elementwise("identity", lambda z: z, lambda z, a: np.ones_like(z))

    def core(settings, identity):
        z, cache = DROPOUT.forward(x, {}, settings)
        dz = identity.backward(z, identity.forward(z), dout)
        return DROPOUT.backward(dz, cache, True)

    def by_hand():  # cs231n dropout_forward / dropout_backward, mode "train"
        mask = D / KEEP_PROB
        return x * mask, dout * mask

    def by_hand_drawn():  # the same, drawing the mask as the seed's rule does
        mask = (np.random.default_rng(1).random(x.shape) < KEEP_PROB) / KEEP_PROB
        return x * mask, dout * mask

    cases = {
        "numpy, mask sent": by_hand,
        "numpy, mask drawn": by_hand_drawn,
        "core, mask, identity before": lambda: core(dropout_layer(KEEP_PROB, D).settings, before),
        "core, mask, identity now": lambda: core(dropout_layer(KEEP_PROB, D).settings, now),
        "core, seed, identity before": lambda: core(
            dropout_layer(KEEP_PROB, seed=1).settings, before
        ),
        "core, seed, identity now": lambda: core(dropout_layer(KEEP_PROB, seed=1).settings, now),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) * 1e3 for name, t in times.items()}
    print(f"dropout ({BATCH} x {UNITS}, keep_prob {KEEP_PROB}), best of {ROUNDS}, interleaved")
    for name, ms in best.items():
        drawn = "seed" in name or "drawn" in name
        baseline = best["numpy, mask drawn" if drawn else "numpy, mask sent"]
        print(f"  {name:30s} {ms:6.2f} ms   {ms / baseline:4.2f}x NumPy")


def network() -> None:
    """784-512(relu)-dropout-10(softmax, cross_entropy), batch 1024: compute_gradients against
    the same network written out in NumPy (CS231n's affine, relu, dropout, softmax_loss)."""
    from service.core import Problem, compute_gradients, dense_layer

    rng = np.random.default_rng(0)
    n_in, n_out = 784, 10
    x, y = rng.normal(size=(BATCH, n_in)), np.eye(n_out)[rng.integers(0, n_out, BATCH)]
    W1, b1 = rng.normal(size=(n_in, UNITS)) * 0.05, np.zeros(UNITS)
    W2, b2 = rng.normal(size=(UNITS, n_out)) * 0.05, np.zeros(n_out)
    D = (rng.random((BATCH, UNITS)) < KEEP_PROB).astype(float)

    def core(*middle):
        layers = (dense_layer(W1, b1, "relu"), *middle, dense_layer(W2, b2, "softmax"))
        return compute_gradients(Problem(x, y, layers, "cross_entropy"))

    def by_hand():
        z1 = x @ W1 + b1
        a1 = np.maximum(z1, 0)
        mask = D / KEEP_PROB
        d = a1 * mask
        z2 = d @ W2 + b2
        e = np.exp(z2 - z2.max(axis=1, keepdims=True))
        s = e / e.sum(axis=1, keepdims=True)
        dz2 = (s - y) / BATCH
        dW2, db2 = d.T @ dz2, dz2.sum(axis=0)
        dz1 = (dz2 @ W2.T) * mask * (z1 > 0)
        return x.T @ dz1, dz1.sum(axis=0), dW2, db2

    cases = {
        "NumPy, mask sent": by_hand,
        "core, no dropout": lambda: core(),
        "core, mask sent": lambda: core(dropout_layer(KEEP_PROB, D)),
        "core, seed": lambda: core(dropout_layer(KEEP_PROB, seed=1)),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(15):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) * 1e3 for name, t in times.items()}
    print(f"784-{UNITS}(relu)-dropout-10, batch {BATCH}, best of 15, interleaved")
    for name, ms in best.items():
        print(f"  {name:30s} {ms:6.1f} ms   {ms / best['NumPy, mask sent']:4.2f}x NumPy")


if __name__ == "__main__":
    main()
    network()
