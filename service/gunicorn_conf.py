"""gunicorn settings, from the environment: ``gunicorn -c python:service.gunicorn_conf``.

| variable         | default      | meaning                                   |
|------------------|--------------|-------------------------------------------|
| HOST             | 127.0.0.1    | address to bind (the image sets 0.0.0.0)   |
| PORT             | 8000         | port to bind                              |
| WEB_CONCURRENCY  | CPU count    | worker processes                          |
| GUNICORN_TIMEOUT | 60           | seconds before a stuck worker is replaced |
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# The work is CPU-bound NumPy: one worker per core, one thread each.
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
threads = 1
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
accesslog = "-"
errorlog = "-"
wsgi_app = "service:create_app()"
# gunicorn 27's control socket lives in ~/.gunicorn, unwritable in a read-only container
# and shared by every server on a machine; nothing here uses it.
control_socket_disable = True

# Workers already use every core; a BLAS thread pool per worker would oversubscribe
# them. Set before any worker imports NumPy (the app is loaded after the fork).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
