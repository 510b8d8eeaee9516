"""Rate limits on /v1/ (Flask-Limiter): per API key, or per client address without keys.

The default, ``GRADIENT_RATELIMIT_DEFAULT``, is counted in process unless
``GRADIENT_RATELIMIT_STORAGE_URI`` names a shared store: in-process counts are
per worker, so with Redis (redis://host:6379) the limit holds across every
worker and replica.  A 429 is problem+json with Retry-After (service.errors).
"""

from flask import Flask, request
from flask_limiter import Limiter

from .auth import PROTECTED_PREFIX, client_identity


def init_app(app: Flask) -> Limiter:
    return Limiter(
        client_identity,
        app=app,
        default_limits_exempt_when=lambda: not request.path.startswith(PROTECTED_PREFIX),
    )
