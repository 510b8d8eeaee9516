"""Peak memory of the ThreeLayerConvNet request in a real gunicorn worker (issue 15).

The worker (the project's gunicorn config, one worker) gets a small conv request
first (imports, first-call set-up), then its peak resident size is reset
(``/proc/<pid>/clear_refs``: VmHWM := VmRSS) and the request is sent as a client
would, base64 with ``include: []``; the peak over the resident size just before
is the request's.  The bound is the issue's: twice the size of its arrays plus
one unfolded (im2col) buffer, "its arrays" being what the request sends and what
the step must produce (see ``array_bytes``); the stricter reading (the arrays
sent alone) is printed beside it.
"""

from __future__ import annotations

import time

import numpy as np
import orjson

from .convnet import (
    BATCH,
    CHANNELS,
    CLASSES,
    FILTERS,
    FLAT,
    HIDDEN,
    KERNEL,
    NAIVE_BATCH,
    SIZE,
    Unavailable,
    body,
    first,
)

MiB = 2**20


def array_bytes(a: dict[str, np.ndarray]) -> tuple[int, int, int]:
    """(what the request sends, what the step must produce, one unfolded buffer), in bytes."""
    n, eight = a["x"].shape[0], 8
    sent = sum(a[k].size * eight for k in ("x", "W1", "b1", "W2", "b2", "W3", "b3"))
    sent += a["y"].size * eight
    conv = n * FILTERS * SIZE * SIZE
    pooled = n * FLAT
    # forward: conv z and relu a, the pool's output (the flatten is a view), the two dense
    # layers' z and a; backward: the gradient into each of those, and dW, db of every layer
    outputs = 2 * conv + pooled + 2 * n * HIDDEN + 2 * n * CLASSES
    gradients = outputs + sum(a[k].size for k in ("W1", "b1", "W2", "b2", "W3", "b3"))
    unfolded = n * SIZE * SIZE * CHANNELS * KERNEL * KERNEL
    return sent, (outputs + gradients) * eight, unfolded * eight


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def worker_peak(request_body: bytes, warm_up: bytes) -> tuple[int, int, float]:
    """(resident bytes before, peak resident bytes during, seconds) of the request in a
    one-worker gunicorn with the project's configuration."""
    import requests

    from .http import Server

    server = Server(WEB_CONCURRENCY="1")
    try:
        (worker,) = server.workers()
        headers = {"Content-Type": "application/json"}
        url = server.url + "/v1/gradients"
        answer = requests.post(url, data=warm_up, headers=headers, timeout=60)
        if answer.status_code != 200:
            raise Unavailable(f"the warm-up request was refused: {answer.text[:300]}")
        with open(f"/proc/{worker}/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM := VmRSS
        before = _status(worker, "VmRSS")
        started = time.perf_counter()
        answer = requests.post(url, data=request_body, headers=headers, timeout=300)
        elapsed = time.perf_counter() - started
        if answer.status_code != 200:
            raise Unavailable(f"the worker refused the request: {answer.text[:300]}")
        return before, _status(worker, "VmHWM"), elapsed
    finally:
        server.stop()


def run(report, a: dict[str, np.ndarray]) -> None:
    request_body = orjson.dumps(body(a, binary=True))
    warm_up = orjson.dumps(body(first(a, NAIVE_BATCH), binary=True))
    try:
        before, peak, elapsed = worker_peak(request_body, warm_up)
    except (Unavailable, OSError, RuntimeError) as why:
        report.unmeasured("worker peak over 2 x arrays + one unfolded buffer", str(why)[:300])
        return
    sent, produced, unfolded = array_bytes(a)
    grew = peak - before
    bound = 2 * (sent + produced) + unfolded
    report.figure(
        f"the request in base64, include [], batch {BATCH}",
        f"{len(request_body) / MiB:.1f} MiB body, answered in {elapsed * 1e3:.0f} ms",
    )
    report.figure(
        "arrays: sent / produced by the step / one unfolded",
        f"{sent / MiB:.1f} / {produced / MiB:.1f} / {unfolded / MiB:.1f} MiB",
    )
    report.figure(
        "worker resident before / peak during the request",
        f"{before / MiB:.0f} / {peak / MiB:.0f} MiB (+{grew / MiB:.0f} MiB)",
    )
    report.figure("bound 2 x (sent + produced) + one unfolded", f"{bound / MiB:.0f} MiB (issue 15)")
    report.figure(
        "stricter: 2 x sent + one unfolded",
        f"{(2 * sent + unfolded) / MiB:.0f} MiB (peak / it: {grew / (2 * sent + unfolded):.2f})",
    )
    report.ratio("conv request's peak / (2 x arrays + one unfolded)", grew / bound, 1.0)
