"""Running the service in production: who may call, how much, and what it reports.

API keys (auth), rate limits and their store (ratelimit, ratestore), Prometheus
metrics (metrics), JSON log lines (logs), the glibc allocator setting (allocator) and gunicorn's own
settings (gunicorn_conf, loaded with ``gunicorn -c python:service.operations.gunicorn_conf``).
Nothing here parses or writes request bodies (that is ``service.http``, which uses
this package, never the reverse) or computes gradients (``service.core``).
This file imports nothing: gunicorn's master imports gunicorn_conf and must load
nothing else (see ``service/__init__.py``).
"""
