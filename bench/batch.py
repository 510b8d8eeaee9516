"""Issue 16: a class of 1,000 graded in one POST /v1/check/batch against 1,000 POST /v1/check.

The problem is a 784-128-10 network (tanh, then sigmoid; half_mse, sum) at batch 64.
Each student submits the loss, layer 1's dW (128 x 10) and both layers' db, in the
binary array form, as a grader would: 60% right, 30% wrong in the usual ways (every
gradient averaged, every sign flipped, db not summed over the batch, dW transposed;
each diagnosed against the mistaken passes), 10% broken (a string where an array
belongs).  Both ways run against the same real gunicorn, each call of the single way
through one kept-alive requests.Session, interleaved: batch, singles, batch, singles.
Targets: the batch at least 10x faster than the singles, and under 2 s.

    python -m bench.batch          (or: python -m bench.run batch)
"""

from __future__ import annotations

import base64
import os
import sys
import time
from itertools import pairwise

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import orjson
import requests

from .http import Server

STUDENTS, BATCH, SIZES = 1_000, 64, (784, 128, 10)


def binary(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array, dtype="<f8")
    return {
        "dtype": "float64",
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode(),
    }


def problem() -> dict:
    rng = np.random.default_rng(16)
    layers = []
    for (n_in, n_out), activation in zip(pairwise(SIZES), ("tanh", "sigmoid")):
        layers.append(
            {
                "weights": binary(rng.normal(scale=1 / np.sqrt(n_in), size=(n_in, n_out))),
                "biases": binary(rng.normal(scale=0.1, size=(1, n_out))),
                "activation": activation,
            }
        )
    return {
        "inputs": binary(rng.normal(size=(BATCH, SIZES[0]))),
        "targets": binary(rng.uniform(size=(BATCH, SIZES[-1]))),
        "layers": layers,
        "loss": "half_mse",
        "reduction": "sum",
    }


def right_answer(url: str, body: dict) -> dict:
    """The right loss, dW and db, from the service itself (lists, float64)."""
    answer = requests.post(f"{url}/v1/gradients", json=body, timeout=60).json()
    return {
        "loss": answer["loss"],
        "dW": [np.array(layer["dW"]) for layer in answer["layers"]],
        "db": [np.array(layer["db"]) for layer in answer["layers"]],
    }


def submissions(right: dict) -> list[dict]:
    """One per student: right, wrong in one of four ways, or broken."""

    def written(loss, dW1, db0, db1) -> dict:
        return {
            "loss": loss,
            "layers": [{"db": binary(db0)}, {"dW": binary(dW1), "db": binary(db1)}],
        }

    loss, (_, dW1), (db0, db1) = right["loss"], right["dW"], right["db"]
    kinds = [
        written(loss, dW1, db0, db1),
        written(loss / BATCH, dW1 / BATCH, db0 / BATCH, db1 / BATCH),
        written(loss, -dW1, -db0, -db1),
        written(loss, dW1, db0, np.repeat(db1 / BATCH, BATCH, axis=0)),
        written(loss, dW1.T, db0, db1),
        {"layers": [None, {"dW": "I did not finish"}]},
    ]
    # 60% right, 7.5% each wrong way, 10% broken
    plan = [0] * 12 + [1, 1, 2, 2, 3, 3, 4, 4] + [5, 5]
    return [kinds[plan[k % len(plan)]] for k in range(STUDENTS)]


def run(report) -> None:
    server = Server()
    try:
        session = requests.Session()
        body = problem()
        right = right_answer(server.url, body)
        entries = submissions(right)
        batch_body = orjson.dumps(
            {
                **body,
                "submissions": [
                    {"student": f"s{k}", "submission": s} for k, s in enumerate(entries)
                ],
            }
        )
        single_bodies = [orjson.dumps({**body, "submission": s}) for s in entries]
        headers = {"Content-Type": "application/json"}

        def batch() -> float:
            started = time.perf_counter()
            response = session.post(
                f"{server.url}/v1/check/batch", data=batch_body, headers=headers
            )
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.text[:500]
            assert len(response.json()["results"]) == STUDENTS
            return elapsed

        def singles() -> float:
            started = time.perf_counter()
            for single in single_bodies:
                response = session.post(f"{server.url}/v1/check", data=single, headers=headers)
                assert response.status_code in (200, 422), response.text[:500]
            return time.perf_counter() - started

        batch()  # warm: the worker's first call imports and allocates
        rounds = {"batch": [], "singles": []}
        for _ in range(2):
            rounds["batch"].append(batch())
            rounds["singles"].append(singles())
        best_batch, best_singles = min(rounds["batch"]), min(rounds["singles"])
        megabytes = len(batch_body) / 2**20
        report.figure(
            f"{STUDENTS:,} submissions, one /v1/check/batch ({megabytes:.1f} MB)",
            "  ".join(f"{t:.2f} s" for t in rounds["batch"]),
        )
        report.figure(
            f"{STUDENTS:,} single /v1/check, one kept-alive session",
            "  ".join(f"{t:.2f} s" for t in rounds["singles"]),
        )
        report.ratio(
            "16. singles time / batch time (best of 2 each)",
            best_singles / best_batch,
            10,
            higher=True,
        )
        report.ratio("16. batch seconds (best of 2)", best_batch, 2.0)
    finally:
        server.stop()


if __name__ == "__main__":
    from .report import Report

    run(Report())
    sys.exit(0)
