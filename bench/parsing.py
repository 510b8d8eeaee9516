"""Issue 11, findings 6 and 7: what a hostile body costs, with the old path beside the new one.

python -m bench.parsing  (about a minute; every pair timed interleaved in one process)

- a 24 MB body of numbers just over GRADIENT_MAX_ELEMENTS: refused from its text
  (service.http.prescan), against the same request with the scan switched off (the
  full parse, then the core's element check: what the service did before), and
  against orjson's parse alone;
- the duplicate-key check of a /v1/check body whose submission.layers starts
  with null (784-128-10, batch 64): the fast path against the exact re-parse
  it used to take, alone and within the whole request;
- bad requests whose errors used to amplify them (100k unknown keys, a 20 MB
  enum string, 100k empty layers): the answer's size and time.  ``python -m
  bench.parsing errors`` runs only this part, which also runs on the commits
  before these changes, for the figures before.
"""

from __future__ import annotations

import json
import sys
import time
from unittest import mock

import numpy as np

from service import create_app
from service.http.json import decode

from .timing import interleaved

JSON = {"Content-Type": "application/json"}
LAYER = b'"layers": [{"weights": [[0.1], [0.2], [0.3]], "biases": [0.0], "activation": "sigmoid"}]'
BATCH = 1_030_000


def over_limit_body() -> bytes:
    """Valid but for its size: 4,120,004 numbers in 24 MB (inputs B x 3, targets B x 1)."""
    inputs = b",".join([b"[0.25,0.50,0.75]"] * BATCH)
    targets = b",".join([b"[1.00]"] * BATCH)
    return (
        b'{"inputs": ['
        + inputs
        + b'], "targets": ['
        + targets
        + b"], "
        + LAYER
        + b', "loss": "mse"}'
    )


def check_body() -> bytes:
    rng = np.random.default_rng(0)
    batch, sizes = 64, (784, 128, 10)
    targets = np.eye(10)[rng.integers(10, size=batch)]
    request = {
        "inputs": rng.normal(size=(batch, sizes[0])).round(4).tolist(),
        "targets": targets.tolist(),
        "layers": [
            {
                "weights": (rng.normal(size=(n_in, n_out)) * 0.05).round(4).tolist(),
                "biases": np.zeros(n_out).tolist(),
                "activation": activation,
            }
            for n_in, n_out, activation in zip(sizes, sizes[1:], ("relu", "softmax"))
        ],
        "loss": "cross_entropy",
        "submission": {"layers": [None, {"db": np.zeros(10).tolist()}]},
    }
    return json.dumps(request).encode()


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f} ms"


def early_refusal() -> None:
    from service.http.prescan import numbers_in_text

    body = over_limit_body()
    client = create_app({"TESTING": True, "RATELIMIT_ENABLED": False}).test_client()

    def refused() -> None:
        response = client.post("/v1/gradients", data=body, headers=JSON)
        assert "refused before parsing" in response.get_json()["detail"]

    def parsed() -> None:
        with mock.patch("service.http.body.numbers_over", return_value=0):
            response = client.post("/v1/gradients", data=body, headers=JSON)
        assert "the arrays hold" in response.get_json()["detail"]

    stats = interleaved(
        {
            "scan": lambda: numbers_in_text(body),
            "parse": lambda: decode(body),
            "refused": refused,
            "parsed": parsed,
        },
        repeats=5,
    )
    print(f"\n24 MB body over the element limit ({len(body) / 1e6:.1f} MB, 4,120,004 numbers)")
    print(f"  text scan alone (service.http.prescan)      {ms(stats['scan'].median)}")
    print(f"  orjson parse alone                     {ms(stats['parse'].median)}")
    print(f"  request refused from the text (now)    {ms(stats['refused'].median)}")
    print(f"  request refused after parsing (before) {ms(stats['parsed'].median)}")
    ratio = stats["parsed"].median / stats["refused"].median
    print(f"  before / now                           {ratio:9.1f} x")


def duplicate_check() -> None:
    from service.http.duplicates import first_duplicate, first_duplicate_exact

    body = check_body()
    data = decode(body)
    client = create_app({"TESTING": True, "RATELIMIT_ENABLED": False}).test_client()

    def request(exact: bool) -> None:
        if exact:
            with mock.patch(
                "service.http.body.first_duplicate", lambda b, d: first_duplicate_exact(b)
            ):
                assert client.post("/v1/check", data=body, headers=JSON).status_code == 200
        else:
            assert client.post("/v1/check", data=body, headers=JSON).status_code == 200

    stats = interleaved(
        {
            "fast": lambda: first_duplicate(body, data),
            "exact": lambda: first_duplicate_exact(body),
            "request fast": lambda: request(False),
            "request exact": lambda: request(True),
        },
        repeats=15,
    )
    print(
        f"\n/v1/check, submission.layers = [null, {{...}}], 784-128-10 ({len(body) / 1e6:.1f} MB)"
    )
    print(f"  duplicate-key check, fast path (now)   {ms(stats['fast'].median)}")
    print(f"  duplicate-key check, exact (before)    {ms(stats['exact'].median)}")
    print(f"  whole request (now)                    {ms(stats['request fast'].median)}")
    print(f"  whole request (exact path, before)     {ms(stats['request exact'].median)}")
    ratio = stats["exact"].median / stats["fast"].median
    print(f"  check before / now                     {ratio:9.1f} x")


def amplifying_errors() -> None:
    client = create_app({"TESTING": True, "RATELIMIT_ENABLED": False}).test_client()
    valid = {
        "inputs": [[0.5, -1.0]],
        "targets": [[1.0]],
        "layers": [{"weights": [[0.1], [0.4]], "biases": [0.0], "activation": "sigmoid"}],
        "loss": "bce",
    }
    cases = {
        "100k unknown keys": {**valid, **{f"k{i:06d}": 1 for i in range(100_000)}},
        "20 MB string in an enum field": {**valid, "loss": "x" * 20_000_000},
        "100k empty layers": {**valid, "layers": [{}] * 100_000},
    }
    print("\nBad requests: the 422's size and time (median of 5)")
    for name, request in cases.items():
        body = json.dumps(request).encode()
        times, size = [], 0
        for _ in range(5):
            started = time.perf_counter()
            response = client.post("/v1/gradients", data=body, headers=JSON)
            times.append(time.perf_counter() - started)
            size = len(response.data)
        print(
            f"  {name:<31} body {len(body):>12,} B  answer {size:>8,} B  "
            f"{ms(float(np.median(times)))}"
        )


def main() -> None:
    """All three; ``errors`` alone runs only the last (it also runs on older commits)."""
    if sys.argv[1:] != ["errors"]:
        early_refusal()
        duplicate_check()
    amplifying_errors()


if __name__ == "__main__":
    main()
