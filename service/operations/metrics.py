"""Prometheus metrics at /metrics, correct under gunicorn's several worker processes.

Each worker writes its samples to files under PROMETHEUS_MULTIPROC_DIR (set by
service/operations/gunicorn_conf.py before any worker starts); /metrics, answered by
whichever worker, aggregates them all.  Without that variable (one process,
tests) the default in-process registry is used.
"""

from __future__ import annotations

import os
import re

from flask import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

SIZE_BUCKETS = tuple(4**k for k in range(3, 13))  # 64 B .. 16 MiB

REQUESTS = Counter(
    "gradient_requests_total", "HTTP requests answered.", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "gradient_request_duration_seconds",
    "Time to answer a request, from its arrival at the server (queueing included).",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REQUEST_BYTES = Histogram(
    "gradient_request_size_bytes", "Request body sizes.", ["endpoint"], buckets=SIZE_BUCKETS
)
RESPONSE_BYTES = Histogram(
    "gradient_response_size_bytes", "Response body sizes.", ["endpoint"], buckets=SIZE_BUCKETS
)
VALIDATION_FAILURES = Counter(
    "gradient_validation_failures_total",
    "422 answers, by the field that failed (layer indices folded to N).",
    ["endpoint", "field"],
)
DIAGNOSES = Counter(
    "gradient_diagnoses_total", "Failed autograder results, by diagnosis.", ["diagnosis"]
)

# The rate-limit store's health, as each worker last found it (service/operations/ratestore.py).
RATELIMIT_STORE_UP = Gauge(
    "gradient_ratelimit_store_up",
    "1 while the rate-limit store answers, 0 during an outage (the minimum over live workers).",
    multiprocess_mode="livemin",
)
RATELIMIT_UNCOUNTED = Counter(
    "gradient_ratelimit_uncounted_total",
    "Requests let through without counting them, because the rate-limit store failed.",
)

_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")


def observe(endpoint: str, method: str, status: int, seconds: float, sizes: tuple[int, int]):
    REQUESTS.labels(endpoint, method, str(status)).inc()
    LATENCY.labels(endpoint).observe(seconds)
    REQUEST_BYTES.labels(endpoint).observe(sizes[0])
    RESPONSE_BYTES.labels(endpoint).observe(sizes[1])


def count_validation_failures(endpoint: str, errors: dict[str, list[str]]) -> None:
    for path, messages in errors.items():
        # Unknown keys are the client's own text: one label for all of them keeps the
        # number of series bounded.
        unknown = any(message.startswith("unknown field") for message in messages)
        VALIDATION_FAILURES.labels(
            endpoint, "(unknown field)" if unknown else _INDEX.sub("N", path)
        ).inc()


def count_diagnoses(codes) -> None:
    for code in codes:
        DIAGNOSES.labels(code).inc()


def metrics_response() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
