"""Issue 15's speed and memory targets: CS231n's ThreeLayerConvNet step.

    python -m bench.conv        (also the "conv" section of python -m bench.run)

The network is CS231n's ThreeLayerConvNet (assignment 2, cnn.py): conv 32
filters 7x7, pad 3, stride 1 - relu - 2x2 max pool stride 2 - affine 100 -
relu - affine 10 - softmax over class labels, a batch of 50 images 3x32x32,
float64.  The request is built as a client sends it (NCHW, the numpy
convention, class labels) and loaded with the service's own request schema; the
core (``compute_gradients`` of its Problem, forward + backward) is timed alone,
as bench.layers times it.  Against it, interleaved in one process, one BLAS
thread on every side:

- torch: PyTorch float64 autograd of the same network (F.conv2d, F.relu,
  F.max_pool2d, F.cross_entropy), torch.set_num_threads(1);
- naive: the loops CS231n's assignment has students write first
  (conv_forward_naive / conv_backward_naive, max_pool_forward_naive /
  max_pool_backward_naive; affine, relu and softmax_loss are the usual
  vectorised ones, a negligible share).  It is timed on a batch of
  NAIVE_BATCH and its time scaled linearly to the batch of 50 (every loop but
  the batch's is the same; the output says so).

Targets: core / torch <= 1.5, naive (scaled) / core >= 50.  Before anything is
timed the three must agree (loss, every dW and db) within rtol 1e-9: core and
torch on the batch of 50, all three on the naive's batch.

The whole request through the in-process app (base64 arrays, ``include: []``,
the schema, the core, the answer's encoding) is timed beside them, for the
record (no target).

Memory (bench.conv_memory): the same request in base64 with ``include: []`` (the
JSON form is over the default 256 MiB request bound: see the cost model), sent to
a real one-worker gunicorn; its peak resident memory against the issue's bound,
twice the request's arrays plus one unfolded (im2col) buffer.

The network, its request and torch's pass are in bench.convnet; the loops in
bench.conv_naive.
"""

from __future__ import annotations

import os
import sys

# One BLAS thread, as bench.run and each gunicorn worker; set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import orjson

from service.core import compute_gradients

from . import conv_memory
from .conv_naive import naive
from .convnet import (
    BATCH,
    CHANNELS,
    NAIVE_BATCH,
    NETWORK,
    SIZE,
    TorchAutograd,
    Unavailable,
    arrays,
    body,
    first,
    load,
)
from .layers import core_gradients, differences, fresh_copies
from .timing import interleaved

REPEATS = 5
#: core / torch at most, naive / core at least (issue 15, "Speed")
TORCH_TARGET, NAIVE_TARGET = 1.5, 50.0
SECTION = "Convolution: CS231n's ThreeLayerConvNet step (issue 15)"
TARGETS = "ThreeLayerConvNet: core / torch, naive / core, worker memory"


def disagreements(a: dict[str, np.ndarray]) -> list[str]:
    """Core and torch on the whole batch, and all three on the naive's batch: what differs."""
    wrong = []
    for batch, with_naive in ((BATCH, False), (NAIVE_BATCH, True)):
        numbers = first(a, batch)
        reference = TorchAutograd(numbers).gradients()
        wrong += differences(reference, core_gradients(load(body(numbers))), f"core ({batch})")
        if with_naive:
            wrong += differences(reference, naive(numbers), f"naive ({batch})")
    return wrong


def run(report) -> None:
    a = arrays()
    try:
        problem = load(body(a))
    except Unavailable as why:
        report.unmeasured(TARGETS, str(why))
        return
    wrong = disagreements(a)
    if wrong:
        report.unmeasured(TARGETS, "not timed, they disagree: " + "; ".join(wrong))
        return
    import logging

    from service import create_app

    # the in-process app's access log would print a line per timed request
    access_log = logging.getLogger("gradient.access")
    was_disabled, access_log.disabled = access_log.disabled, True
    client = create_app({"RATELIMIT_ENABLED": False}).test_client()
    binary_body = orjson.dumps(body(a, binary=True))

    def request() -> None:
        response = client.post(
            "/v1/gradients", data=binary_body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.get_data(as_text=True)[:300]

    small = first(a, NAIVE_BATCH)
    problems = iter(fresh_copies(problem, 1 + REPEATS))
    try:
        stats = interleaved(
            {
                "core": lambda: compute_gradients(next(problems)),
                "torch": TorchAutograd(a),
                "request": request,
                "naive": lambda: naive(small),
            },
            REPEATS,
        )
    finally:
        access_log.disabled = was_disabled
    scale = BATCH / NAIVE_BATCH
    report.figure(
        "same loss and gradients (rtol 1e-9)",
        f"core, torch ({BATCH}); naive too ({NAIVE_BATCH})",
    )
    report.figure("network", NETWORK)
    report.figure(f"core, batch {BATCH} of {CHANNELS}x{SIZE}x{SIZE}, float64", stats["core"])
    report.figure("torch autograd float64, 1 thread", stats["torch"])
    report.figure("whole request in process (base64, include [])", stats["request"])
    report.figure(f"naive loops, batch {NAIVE_BATCH}", stats["naive"])
    report.figure(
        f"naive loops, scaled x{scale:g} to batch {BATCH}",
        f"{stats['naive'].median * scale * 1e3:9.0f} ms (linear in the batch)",
    )
    report.ratio(
        "core / torch autograd, ThreeLayerConvNet",
        stats["core"].median / stats["torch"].median,
        TORCH_TARGET,
    )
    request_ratio = stats["request"].median / stats["torch"].median
    report.ratio("whole request / torch autograd (no target)", request_ratio, None)
    report.ratio(
        "naive loops (scaled) / core, ThreeLayerConvNet",
        stats["naive"].median * scale / stats["core"].median,
        NAIVE_TARGET,
        higher=True,
    )
    conv_memory.run(report, a)


def main() -> int:
    from .report import run_section

    return run_section(SECTION, run)


if __name__ == "__main__":
    sys.exit(main())
