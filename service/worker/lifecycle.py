"""Whether this worker is draining: set on SIGTERM, so /readyz answers 503 while requests
in flight finish (see post_worker_init in service/operations/gunicorn_conf.py)."""

import threading

_draining = threading.Event()


def mark_draining() -> None:
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()
