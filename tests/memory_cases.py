"""Requests at the memory bound: the largest each endpoint accepts, thin-wide and deep-narrow.

Each case is sized from the cost model itself: the largest request of its kind
whose estimate is within the limit (and whose body within the body limit).
``python -m bench.memory_bound`` prints, for each, the estimate, the peak
tracemalloc sees in one process, and a real gunicorn worker's peak RSS.
"""

from __future__ import annotations

import subprocess
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import orjson

from schemas.binary import encode
from service.core import limits as core_limits
from service.core.cost import Cost
from service.core.errors import LimitExceeded

LIMIT = core_limits.Limits().max_request_bytes
MAX_FLOPS = core_limits.Limits().max_flops
BODY_LIMIT = 32 * 2**20


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: bytes


def lists(array: np.ndarray) -> list:
    return array.tolist()


def network(sizes, batch, activations=None, *, form=lists, loss="mse", **extra) -> dict:
    """A /v1/gradients or /v1/check problem with seeded random numbers."""
    rng = np.random.default_rng(0)
    activations = activations or ["tanh"] * (len(sizes) - 2) + ["identity"]
    layers = [
        {
            "weights": form(rng.normal(scale=n_in**-0.5, size=(n_in, n_out))),
            "biases": form(rng.normal(scale=0.1, size=n_out)),
            "activation": activation,
        }
        for n_in, n_out, activation in zip(sizes[:-1], sizes[1:], activations)
    ]
    targets = rng.uniform(size=(batch, sizes[-1])) if loss == "bce" else None
    return {
        "inputs": form(rng.normal(size=(batch, sizes[0]))),
        "targets": form(rng.normal(size=(batch, sizes[-1])) if targets is None else targets),
        "layers": layers,
        "loss": loss,
        **extra,
    }


def wrong_submission(sizes, batch) -> dict:
    """Every field of every layer submitted, all wrong: the grader tries every mistake."""
    rng = np.random.default_rng(1)
    return {
        "loss": 123.0,
        "layers": [
            {
                **{name: rng.normal(size=(batch, n_out)).tolist() for name in ("z", "a", "dz")},
                "dW": rng.normal(size=(n_in, n_out)).tolist(),
                "db": rng.normal(size=n_out).tolist(),
            }
            for n_in, n_out in pairwise(sizes)
        ],
    }


# -- what the service would estimate -------------------------------------------------------


class _Estimated(LimitExceeded):
    pass


def estimate(client, path: str, body: bytes) -> Cost | None:
    """The cost the service computes for this request (recorded, then the request stops);
    None when a counting limit (layers, numbers, parameters to check) refuses it first."""
    seen: list[Cost] = []

    def record(cost, *args, **kwargs):
        seen.append(cost)
        raise _Estimated("_request", "estimated")

    saved = core_limits.check_cost
    core_limits.check_cost = record
    try:
        client.post(path, data=body, content_type="application/json")
    finally:
        core_limits.check_cost = saved
    return seen[0] if seen else None


def thin_wide(n):  # the finding-1 network: inputs (n, 1), layers (1, n) -> (n, 1)
    return network([1, n, 1], n)


def deep_narrow(n):  # 64 layers of 16 units, batch n
    return network([16] * 65, n)


def gradients_every_array(n):  # z, a, dz and the updated layers, as JSON lists
    return network([784, 256, 10], n, include=["z", "a", "dz"], learning_rate=0.1)


def gradients_base64(n):  # the benchmark's largest network, base64 in and out
    return network([1024, 1024, 1024], n, form=encode, encoding="base64", learning_rate=0.1)


def gradient_check(n):  # 4,961 parameters (at most 5,000 may be checked), batch n
    return network([48, 96, 3], n, gradient_check=True)


def check(n):  # every field wrong, revealed: every mistaken pass is computed, one at a time
    sizes = [32, 64, 64, 4]
    problem = network(sizes, n, ["sigmoid", "tanh", "sigmoid"], loss="bce")
    return {**problem, "submission": wrong_submission(sizes, n), "reveal": True}


def exercises(n):  # n layers of 256 units, batch 1,024
    sizes = [256] * (n + 1)
    return {
        "seed": 1,
        "layer_sizes": sizes,
        "activations": ["tanh"] * n,
        "loss": "mse",
        "batch_size": 1024,
    }


def exercises_wide(n):  # one layer of 1,024 x 1,024 (the widest), batch n
    return {
        "seed": 1,
        "layer_sizes": [1024, 1024],
        "activations": ["tanh"],
        "loss": "mse",
        "batch_size": n,
    }


def neuron(n):  # n inputs, the longest curve and descent
    rng = np.random.default_rng(0)
    return {
        "x": rng.normal(size=n).tolist(),
        "w": rng.normal(size=n).tolist(),
        "b": 0.1,
        "y": 1.0,
        "activation": "sigmoid",
        "loss": "mse",
        "curve_points": 401,
        "steps": 200,
    }


#: name -> (path, the request of size n, the range searched for the largest n)
MAKERS: dict[str, tuple[str, Callable[[int], dict], int, int]] = {
    "thin_wide": ("/v1/gradients", thin_wide, 100, 20_000),
    "deep_narrow": ("/v1/gradients", deep_narrow, 100, 200_000),
    "gradients_every_array": ("/v1/gradients", gradients_every_array, 16, 20_000),
    "gradients_base64": ("/v1/gradients", gradients_base64, 16, 4_000),
    "check": ("/v1/check", check, 16, 20_000),
    "exercises": ("/v1/exercises", exercises, 1, 64),
    "exercises_wide": ("/v1/exercises", exercises_wide, 1, 1024),
    "neuron": ("/v1/neuron", neuron, 1000, 1_000_000),
}

#: The largest n of each case under the default limits: ``python -m bench.memory_bound search``.
SIZES = {
    "thin_wide": 1245,
    "deep_narrow": 3369,
    "gradients_every_array": 1869,
    "gradients_base64": 303,
    "check": 3880,
    "exercises": 7,
    "exercises_wide": 316,
    "neuron": 680_007,
}


def case(name: str, n: int | None = None) -> Case:
    path, make, _, _ = MAKERS[name]
    return Case(name, path, orjson.dumps(make(SIZES[name] if n is None else n)))


def fits(client, name: str, n: int) -> bool:
    """Whether the service would accept case ``name`` of size n (limits and body)."""
    body = case(name, n).body
    if len(body) > BODY_LIMIT:
        return False
    cost = estimate(client, MAKERS[name][0], body)
    return cost is not None and cost.bytes <= LIMIT and cost.flops <= MAX_FLOPS


def largest(client, name: str) -> int:
    """The largest n the service accepts, within 2% (the search stays cheap)."""
    _, _, low, high = MAKERS[name]
    assert fits(client, name, low), f"{name}: even {low} is over the limits"
    while high - low > max(1, low // 50):
        middle = (low + high) // 2
        low, high = (middle, high) if fits(client, name, middle) else (low, middle)
    return low


# -- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traced:
    status: int
    estimate: Cost
    view: int  # bytes the request held at its peak, from its cost check to its answer's text
    whole: int  # the peak over the whole request, parsing included


def traced(client, case: Case) -> Traced:
    """The request in this process under tracemalloc (which sees NumPy's and the JSON
    libraries' allocations); its view's peak is measured from the cost check on."""
    seen: list[tuple[Cost, int, int]] = []

    def at_view(cost, *args, **kwargs):
        current, peak = tracemalloc.get_traced_memory()
        seen.append((cost, current, peak))
        tracemalloc.reset_peak()
        return saved(cost, *args, **kwargs)

    saved = core_limits.check_cost
    core_limits.check_cost = at_view
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        response = client.post(case.path, data=case.body, content_type="application/json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        core_limits.check_cost = saved
    cost, _, parse_peak = seen[0]
    return Traced(response.status_code, cost, peak - base, max(peak, parse_peak) - base)


def workers(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    """VmHWM back to the current RSS (proc(5): clear_refs "5")."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")


def start_worker():
    """A real gunicorn with the repository's config and one worker: (url, master process).

    Waits for /healthz itself, tolerating read timeouts on a busy machine."""
    import os

    import requests

    from tests.conftest import BIN, free_port, launch, stop_server

    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "GRADIENT_RATELIMIT_DEFAULT": "1000 per second",
    }
    command = [str(BIN / "gunicorn"), "--config", "python:service.operations.gunicorn_conf"]
    process = launch([*command, "service:create_app()"], env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(url + "/healthz", timeout=5).ok and workers(process.pid):
                return url, process
        except requests.RequestException:
            time.sleep(0.2)
    log = stop_server(process)
    raise RuntimeError(f"gunicorn did not become healthy:\n{log[-2000:]}")


def rss_peaks(
    url: str, worker: int, cases: list[Case], status: int = 200
) -> list[tuple[float, float]]:
    """Each case sent to a real worker in turn: its RSS before and its peak RSS, MiB."""
    import requests

    figures = []
    for case in cases:
        reset_peak(worker)
        before = status_kib(worker, "VmRSS") / 1024
        response = requests.post(
            url + case.path,
            data=case.body,
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
        assert response.status_code == status, response.text[:300]
        figures.append((before, status_kib(worker, "VmHWM") / 1024))
    return figures


#: Heap-heavy first, so what the worker keeps of it meets the largest answers and bodies after.
ORDER = ["deep_narrow", *(name for name in SIZES if name != "deep_narrow")]


def assert_every_pass_within_estimate(problem) -> None:
    """The reference pass kept, and every mistaken pass of the autograder computed beside it
    one at a time, each freed before the next as the grader's walk frees it (service.grading
    Grader.explain), traced by tracemalloc: within the cost model's estimate of them."""
    from service.core import compute_gradients
    from service.core.cost import NetworkShape
    from service.core.mistakes import passes_needed, reruns_forward, variants
    from service.core.network import forward
    from service.core.request_costs import grading_passes_parts

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with np.errstate(all="ignore"):
            fwd = forward(problem)
            reference = compute_gradients(problem, fwd)
            computed = 0
            for variant in variants(problem, fwd):
                computed += 1
                del variant
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert reference is not None and 1 + computed <= passes_needed(problem)
    net, passes = NetworkShape.of(problem), passes_needed(problem)
    estimate = sum(
        part.bytes for part in grading_passes_parts(net, passes, reruns_forward(problem))
    )
    assert peak <= estimate, f"{peak / 2**20:.1f} MiB held, {estimate / 2**20:.1f} MiB estimated"
