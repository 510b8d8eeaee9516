"""gunicorn settings, each with its reason: ``gunicorn -c python:service.gunicorn_conf``.

| variable                | default    | meaning                                        |
|-------------------------|------------|------------------------------------------------|
| HOST                    | 127.0.0.1  | address to bind (the image sets 0.0.0.0)        |
| PORT                    | 8000       | port to bind                                   |
| WEB_CONCURRENCY         | CPU count  | worker processes                               |
| GUNICORN_TIMEOUT        | 60         | seconds before a stuck worker is replaced      |
| GUNICORN_GRACEFUL_TIMEOUT | 30       | seconds a draining worker may finish requests in |
| GUNICORN_MAX_REQUESTS   | 100000     | requests before a worker is recycled (0: never) |
"""

import os
import shutil
import signal
import tempfile

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
wsgi_app = "service:create_app()"

# The work is CPU-bound NumPy: one single-threaded worker per core. Two one-thread
# workers out-serve one two-thread process on these machines (no GIL contention, no
# BLAS threads fighting over the same cores).
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
worker_class = "sync"
threads = 1

# The service's own time budget (GRADIENT_TIME_BUDGET_SECONDS, 20 s) ends a long
# computation with a clear 422 well before this kills the worker with an HTML 500.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# On SIGTERM a worker stops accepting, /readyz turns 503, and requests in flight
# get this long to finish; compose's stop_grace_period and Kubernetes'
# terminationGracePeriodSeconds are longer.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
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

# The service writes one JSON line per request itself (service/requestlog.py).
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
    """Keep freed memory for the next request (service/allocator.py: a large request is
    30% faster here), and on SIGTERM mark the worker draining (/readyz: 503) before
    gunicorn's own handler."""
    from service import allocator, lifecycle

    allocator.keep_freed_memory()

    graceful_exit = worker.handle_exit

    def drain_then_exit(signum, frame):
        lifecycle.mark_draining()
        graceful_exit(signum, frame)

    signal.signal(signal.SIGTERM, drain_then_exit)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for directory in _own_metrics_dir:
        shutil.rmtree(directory, ignore_errors=True)
