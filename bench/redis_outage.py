"""The rate limit in Redis, healthy and SIGSTOPped: small /v1/gradients throughput and p99.

python -m bench.redis_outage  (needs redis-server and wrk, which `make bench` installs)

A real gunicorn (two workers) counting in a real redis-server; wrk loads small POST
/v1/gradients for 5 s with Redis answering, then 5 s with Redis stopped, twice,
interleaved, and /healthz while it is stopped; then 6 s with nothing listening where Redis
should be.  Without the store's timeouts the stopped rounds answered nothing at all (every
worker waited on Redis for good), and a refused connection wrote a traceback per request.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

from tests.conftest import start_redis

from .cases import SMALL
from .http import ROOT, wrk
from .report import Report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(redis_url: str, log) -> tuple[str, subprocess.Popen]:
    """gunicorn with the default configuration, counting in Redis; its log in a file."""
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GRADIENT_RATELIMIT_DEFAULT": "100000000 per minute",
        "GRADIENT_RATELIMIT_STORAGE_URI": redis_url,
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    process = subprocess.Popen(
        [gunicorn, "-c", "python:service.operations.gunicorn_conf", "service:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/healthz", timeout=5).ok:
                return url, process
        except requests.RequestException:  # not listening yet, or a worker still importing
            time.sleep(0.2)
    process.kill()
    process.wait()
    raise RuntimeError("gunicorn did not start")


def run(report: Report) -> None:
    if not (shutil.which("wrk") and shutil.which("redis-server")):
        report.figure("redis outage", "skipped: needs wrk and redis-server (make bench)")
        return
    redis_url, redis_process = start_redis()
    log_file = tempfile.TemporaryFile()
    server = None
    body = orjson.dumps(SMALL.request())
    results: dict[str, list[dict]] = {"healthy": [], "stopped": []}
    try:
        url, server = start_gunicorn(redis_url, log_file)
        for phase in ("healthy", "stopped", "healthy", "stopped"):
            if phase == "stopped":
                redis_process.send_signal(signal.SIGSTOP)
            results[phase].append(wrk(url + "/v1/gradients", 5, body))
            if phase == "stopped":
                health = wrk(url + "/healthz", 3)
                redis_process.send_signal(signal.SIGCONT)
                time.sleep(1.5)  # each worker tries the store again after a second
    finally:
        redis_process.send_signal(signal.SIGCONT)
        redis_process.terminate()
        redis_process.wait(timeout=10)
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    log_file.seek(0)
    log = log_file.read()
    log_file.close()
    for phase, runs in results.items():
        report.figure(
            f"small /v1/gradients, Redis {phase}: requests/s, p99",
            ", ".join(f"{r['rps']:6.0f} /s p99 {r['p99']:6.2f} ms" for r in runs)
            + f"  non-2xx {sum(r['errors'] for r in runs)}",
        )
    report.figure(
        "/healthz, Redis stopped: requests/s, p99",
        f"{health['rps']:6.0f} /s p99 {health['p99']:6.2f} ms  non-2xx {health['errors']}",
    )
    ratio = sum(r["rps"] for r in results["stopped"]) / sum(r["rps"] for r in results["healthy"])
    report.ratio("requests/s, Redis stopped / healthy", ratio, None)
    outage_lines = log.count(b'"event":"ratelimit_store_')
    report.figure(
        "log: store outage lines, tracebacks",
        f"{outage_lines} (6 expected: each worker's start of both outages, end of the "
        "first; the second ends with no request after it), "
        f"{log.count(b'Traceback')} tracebacks",
    )

    run_refused(report, body)


def run_refused(report: Report, body: bytes) -> None:
    """Redis down (nothing listening): 6 s of load, and what the log holds besides access."""
    log_file = tempfile.TemporaryFile()
    url, server = start_gunicorn(f"redis://127.0.0.1:{free_port()}", log_file)
    try:
        result = wrk(url + "/v1/gradients", 6, body)
    finally:
        server.terminate()
        server.wait(timeout=30)
    log_file.seek(0)
    lines = [line for line in log_file.read().splitlines() if b'"message":"request"' not in line]
    log_file.close()
    text = b"\n".join(lines)
    report.figure(
        "small /v1/gradients, Redis refusing: requests/s, p99",
        f"{result['rps']:6.0f} /s p99 {result['p99']:6.2f} ms  non-2xx {result['errors']}",
    )
    report.figure(
        "log besides access lines: store lines, tracebacks, bytes",
        f"{text.count(b'ratelimit_store_')}, {text.count(b'Traceback')}, {len(text):,}",
    )


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    run(Report())
