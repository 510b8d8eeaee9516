"""The dropout layer's own cost: its forward and backward (identity activation) at the
benchmark's shape, a dropout after the 512-unit relu layer at batch 1024, against CS231n's
dropout_forward / dropout_backward written out in NumPy; identity's backward as it was
(dL/da times an array of ones) and as it is (dL/da itself), interleaved in one run.

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


if __name__ == "__main__":
    main()
