"""gunicorn settings, each with its reason: ``gunicorn -c python:service.operations.gunicorn_conf``.

| variable                   | default    | meaning                                      |
|----------------------------|------------|----------------------------------------------|
| HOST                       | 127.0.0.1  | address to bind (the image sets 0.0.0.0)      |
| PORT                       | 8000       | port to bind                                 |
| WEB_CONCURRENCY            | CPU count  | worker processes                             |
| GUNICORN_TIMEOUT           | 60         | seconds before a stuck worker is replaced    |
| GUNICORN_GRACEFUL_TIMEOUT  | 30         | seconds from SIGTERM for requests to finish  |
| GUNICORN_MAX_REQUESTS      | 100000     | requests before a worker is recycled (0: never) |
| GUNICORN_THREADS           | 32         | threads per worker (one computes at a time)  |
| GUNICORN_WORKER_CONNECTIONS | 500       | connections one worker holds open at most    |
| GUNICORN_READ_TIMEOUT      | 10         | seconds for a request to arrive (408 past it) |
| GUNICORN_SEND_TIMEOUT      | 30         | seconds for a client to read an answer       |
| GUNICORN_MIN_TRANSFER_RATE | 1048576    | bytes/s; large bodies, answers get size/rate s more |
| GUNICORN_BODY_BUFFER_BYTES | 67108864   | bodies over 1 MiB a worker holds at once (503 past) |
| GUNICORN_DRAIN_SECONDS     | 2          | after SIGTERM: /readyz 503, still accepting  |
"""

import os
import resource
import shutil
import tempfile

from service.worker import GradientWorker, WorkerSettings

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
wsgi_app = "service:create_app()"


def _number(name: str, default: float) -> float:
    value = float(os.environ.get(name) or default)
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


# The work is CPU-bound NumPy: one process per core, and in each process one computation
# at a time (two computations in one process fight over the GIL and the core). The worker
# (service/worker/, measured in bench/slowclients.py) is gunicorn's threaded one, so that
# clients that send or read slowly hold a thread for a bounded time, never the process:
# heads are read without a thread, every request has a read deadline, and /healthz,
# /readyz and /metrics are answered by another thread while one computes.
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
worker_class = GradientWorker.configured(
    WorkerSettings(
        read_timeout=_number("GUNICORN_READ_TIMEOUT", 10),
        send_timeout=_number("GUNICORN_SEND_TIMEOUT", 30),
        min_transfer_rate=_number("GUNICORN_MIN_TRANSFER_RATE", 1 << 20),
        drain_seconds=float(os.environ.get("GUNICORN_DRAIN_SECONDS") or 2),
        body_buffer_bytes=int(_number("GUNICORN_BODY_BUFFER_BYTES", 64 << 20)),
    )
)
# Threads wait for the computation, read bodies and answer health checks; 30 slow
# clients on one worker still leave it threads to answer.
threads = int(_number("GUNICORN_THREADS", 32))
# Each connection is a file descriptor: stay under the process's limit (often 1,024).
worker_connections = min(
    int(_number("GUNICORN_WORKER_CONNECTIONS", 500)),
    resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 64,
)

# The service's own time budget (GRADIENT_TIME_BUDGET_SECONDS, 20 s) ends a long
# computation with a clear 422 well before this kills the worker with an HTML 500.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# On SIGTERM a worker turns /readyz 503, keeps accepting for GUNICORN_DRAIN_SECONDS
# (the load balancer is still sending), then closes its listening sockets so new
# connections are refused at once; requests in flight get the rest of this long to
# finish (it counts from the SIGTERM). compose's stop_grace_period and Kubernetes'
# terminationGracePeriodSeconds are longer.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
if not 0 <= worker_class.settings.drain_seconds < graceful_timeout:
    raise ValueError("GUNICORN_DRAIN_SECONDS must be >= 0 and below GUNICORN_GRACEFUL_TIMEOUT")
# Recycle workers now and then (staggered by the jitter) so a slow leak in any
# library cannot grow without bound. Not often: a new worker spends 0.6 s of CPU
# importing NumPy, Flask and the schemas, and at the 1,300 small requests a second a
# worker serves here, 5,000 meant a restart every 4 s (15% of its time, and p99
# latencies of 0.3-0.5 s while the other worker took the load). 100,000 is a
# restart a minute or so at full load, and hours apart at a course's usual load.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "100000"))
max_requests_jitter = max_requests // 10
# Behind a load balancer that reuses connections.
keepalive = 5

# The service writes one JSON line per request itself (service/http/requestlog.py).
accesslog = None
errorlog = "-"
# gunicorn 27's control socket lives in ~/.gunicorn, unwritable in a read-only
# container and shared by every server on a machine; nothing here uses it.
control_socket_disable = True

_own_metrics_dir: list[str] = []


def on_starting(server):
    """In the master, before any worker forks (importing this module changes nothing)."""
    # One BLAS thread per worker, set before any worker imports NumPy.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    # Prometheus' multiprocess mode: every worker writes its samples here and /metrics
    # aggregates them; it must be set before the workers import prometheus_client.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gradient-metrics-")
        _own_metrics_dir.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def when_ready(server):
    from service.config import api_keys

    if not api_keys():
        server.log.warning(
            "no API keys configured (GRADIENT_API_KEYS, GRADIENT_API_KEYS_FILE): "
            "/v1/ is open to anyone who can reach it"
        )
    else:
        server.log.info("API keys required on /v1/ (%d configured)", len(api_keys()))


def post_worker_init(worker):
    """Keep freed memory for the next request (service/operations/allocator.py: a large request is
    30% faster here), in one arena that the worker's threads share."""
    from service.operations import allocator

    allocator.keep_freed_memory()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for directory in _own_metrics_dir:
        shutil.rmtree(directory, ignore_errors=True)
