"""Configuration: one class, every setting from an environment variable with a default.

| variable                 | default     | meaning                                          |
|--------------------------|-------------|--------------------------------------------------|
| GRADIENT_MAX_BODY_BYTES  | 33554432    | request bodies larger than this get 413          |
| GRADIENT_MAX_ELEMENTS    | 4000000     | numbers across all arrays of one request         |
| GRADIENT_MAX_LAYERS      | 64          | layers in one request                            |
| GRADIENT_MAX_FLOPS       | 20000000000 | estimated forward + backward floating-point ops  |
| GRADIENT_MAX_CHECK_PARAMETERS | 5000   | parameters a numerical gradient check may nudge  |
| GRADIENT_MAX_REQUEST_BYTES | 268435456 | bytes one request may hold at its peak (256 MiB) |
| GRADIENT_TIME_BUDGET_SECONDS | 20      | wall-clock budget of one computation (422 past it) |
| GRADIENT_API_KEYS        | (none)      | comma-separated keys; when set, /v1/ needs one   |
| GRADIENT_API_KEYS_FILE   | (none)      | a file of keys, one per line (# comments)        |
| GRADIENT_RATELIMIT_DEFAULT | 600 per minute | per API key (or client address) and endpoint |
| GRADIENT_RATELIMIT_STORAGE_URI | memory:// | redis://host:6379 shares limits across replicas |
| GRADIENT_RATELIMIT_STORAGE_TIMEOUT | 0.1 | seconds to connect, and per reply; then fail open |
| GRADIENT_RATELIMIT_COMPUTE_SECONDS | 30 per minute | compute seconds per client, expensive work |
| GRADIENT_EXPENSIVE_FLOPS | 100000000 | estimated work over which a request is expensive |
| GRADIENT_TRUSTED_PROXIES | 0           | proxies in front whose X-Forwarded-For is trusted |
| GRADIENT_MAX_BATCH_SUBMISSIONS | 2000  | submissions one /v1/check/batch grades (at most 20000) |
| GRADIENT_CHECK_QUOTA     | (none)      | checks per student and assignment, e.g. "10 per hour" |
| GRADIENT_ALLOW_REVEAL    | true        | false: a request asking for reveal gets 403      |

The server's own settings (HOST, PORT, WEB_CONCURRENCY, ...) are read by
service/operations/gunicorn_conf.py.  Expensive requests (service/operations/ratelimit.py)
are those asking for a gradient_check and those estimated over GRADIENT_EXPENSIVE_FLOPS;
past the store's timeout the rate limits fail open (service/operations/ratestore.py).
GRADIENT_CHECK_QUOTA counts in the rate limit's store (service/operations/quota.py): set
GRADIENT_RATELIMIT_STORAGE_URI to a Redis to share it across workers and replicas.

GRADIENT_MAX_REQUEST_BYTES bounds what one request may add to a worker's memory
at its peak (its body, arrays, every layer's activations and gradients, the
temporaries, its answer's text), priced from its shapes before anything is
allocated (service/core/cost.py); over it, a 422 names the largest part.  The
default is sized so that WEB_CONCURRENCY workers at their peak fit the container's
memory limit with room.  A worker computes one request at a time (service/worker/),
so its RSS stays under its idle RSS (48 MiB measured) + the freed memory it keeps for
the next request (its trim threshold, 256 MiB, service/operations/allocator.py) + this + the
bodies it is reading meanwhile (GUNICORN_BODY_BUFFER_BYTES, 64 MiB, plus 1 MiB per
thread reading a small one, 32).  The shipped Kubernetes pod (limit 2 GiB,
WEB_CONCURRENCY 2): 2 x (48 + 256 + 256 + 64 + 32) MiB + the master's 37 MiB =
1.3 GiB at the very worst, 66% of the limit (measured: a worker peaked at 355 MiB
over the largest request of each endpoint in turn).  Raise it with the memory limit:
WEB_CONCURRENCY x (idle + 256 MiB + this + the body budget) + the master must fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from limits import parse

from service.core import Limits
from service.core.limits import MAX_BATCH_SUBMISSIONS


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def api_keys(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The configured API keys: GRADIENT_API_KEYS and the lines of GRADIENT_API_KEYS_FILE."""
    env = os.environ if env is None else env
    keys = [key.strip() for key in env.get("GRADIENT_API_KEYS", "").split(",")]
    path = env.get("GRADIENT_API_KEYS_FILE", "").strip()
    if path:
        with open(path, encoding="utf-8") as lines:
            keys += [line.strip() for line in lines if not line.lstrip().startswith("#")]
    return tuple(dict.fromkeys(key for key in keys if key))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    """A limit such as "30 per minute", checked at start-up rather than at the first request."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        amount = parse(raw).amount
    except ValueError:
        amount = 0
    if amount <= 0:
        raise ValueError(
            f'{name} must be a positive amount per period, such as "30 per minute", got {raw!r}'
        )
    return raw


def _batch_size(env: Mapping[str, str], default: int) -> int:
    value = _int(env, "GRADIENT_MAX_BATCH_SUBMISSIONS", default)
    if value > MAX_BATCH_SUBMISSIONS:
        raise ValueError(
            f"GRADIENT_MAX_BATCH_SUBMISSIONS must be at most {MAX_BATCH_SUBMISSIONS:,} "
            f"(the request schema's hard cap), got {value:,}"
        )
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


class Config:
    """Flask settings; ``from_env`` reads them when the app is created, not at import."""

    API_TITLE = "Gradient service"
    API_VERSION = "1.0.0"
    #: 3.0, not 3.1: 3.1's JSON Schema counts 7.0 as an integer, which the service refuses
    #: (schemas.fields.Whole); 3.0's validators agree with the service.
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    #: served by the service itself (see service.http.docs): the page works offline
    OPENAPI_SWAGGER_UI_URL = "/docs/static/"
    API_SPEC_OPTIONS = {
        "info": {
            "description": (
                "Forward activations, loss and every layer's dW and db for a dense network, "
                "computed exactly in float64. Errors are RFC 9457 problem+json, those outside "
                "any operation too: 404 for an unknown path, 405 with an Allow header for a "
                "method a path does not take."
            ),
            "license": {"name": "MIT", "url": "https://opensource.org/license/mit"},
        }
    }

    MAX_CONTENT_LENGTH = 32 * 1024 * 1024
    GRADIENT_LIMITS = Limits()
    GRADIENT_TIME_BUDGET_SECONDS = 20.0
    GRADIENT_API_KEYS: tuple[str, ...] = ()
    GRADIENT_TRUSTED_PROXIES = 0

    # the rate limit on /v1/ (service.operations.ratelimit)
    RATELIMIT_ENABLED = True
    RATELIMIT_DEFAULT = "600 per minute"
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_KEY_PREFIX = "gradient"
    RATELIMIT_STORAGE_TIMEOUT = 0.1
    RATELIMIT_COMPUTE_SECONDS = "30 per minute"
    GRADIENT_EXPENSIVE_FLOPS = 100_000_000
    #: checks per student and assignment (service.operations.quota); None: no quota
    GRADIENT_CHECK_QUOTA: str | None = None
    GRADIENT_ALLOW_REVEAL = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> dict:
        env = os.environ if env is None else env
        defaults = Limits()
        settings = {k: v for k, v in vars(cls).items() if k.isupper()}
        settings["MAX_CONTENT_LENGTH"] = _int(
            env, "GRADIENT_MAX_BODY_BYTES", cls.MAX_CONTENT_LENGTH
        )
        settings["GRADIENT_LIMITS"] = Limits(
            max_elements=_int(env, "GRADIENT_MAX_ELEMENTS", defaults.max_elements),
            max_layers=_int(env, "GRADIENT_MAX_LAYERS", defaults.max_layers),
            max_flops=_int(env, "GRADIENT_MAX_FLOPS", defaults.max_flops),
            max_check_parameters=_int(
                env, "GRADIENT_MAX_CHECK_PARAMETERS", defaults.max_check_parameters
            ),
            max_request_bytes=_int(env, "GRADIENT_MAX_REQUEST_BYTES", defaults.max_request_bytes),
            max_batch_submissions=_batch_size(env, defaults.max_batch_submissions),
        )
        settings["GRADIENT_TIME_BUDGET_SECONDS"] = _number(
            env, "GRADIENT_TIME_BUDGET_SECONDS", cls.GRADIENT_TIME_BUDGET_SECONDS
        )
        settings["GRADIENT_API_KEYS"] = api_keys(env)
        raw_proxies = env.get("GRADIENT_TRUSTED_PROXIES", "").strip()
        settings["GRADIENT_TRUSTED_PROXIES"] = int(raw_proxies) if raw_proxies else 0
        settings["RATELIMIT_DEFAULT"] = (
            env.get("GRADIENT_RATELIMIT_DEFAULT", "").strip() or cls.RATELIMIT_DEFAULT
        )
        settings["RATELIMIT_STORAGE_URI"] = (
            env.get("GRADIENT_RATELIMIT_STORAGE_URI", "").strip() or cls.RATELIMIT_STORAGE_URI
        )
        settings["RATELIMIT_STORAGE_TIMEOUT"] = _number(
            env, "GRADIENT_RATELIMIT_STORAGE_TIMEOUT", cls.RATELIMIT_STORAGE_TIMEOUT
        )
        settings["RATELIMIT_COMPUTE_SECONDS"] = _rate(
            env, "GRADIENT_RATELIMIT_COMPUTE_SECONDS", cls.RATELIMIT_COMPUTE_SECONDS
        )
        settings["GRADIENT_EXPENSIVE_FLOPS"] = _int(
            env, "GRADIENT_EXPENSIVE_FLOPS", cls.GRADIENT_EXPENSIVE_FLOPS
        )
        settings["GRADIENT_CHECK_QUOTA"] = _rate(env, "GRADIENT_CHECK_QUOTA", "") or None
        settings["GRADIENT_ALLOW_REVEAL"] = _flag(env, "GRADIENT_ALLOW_REVEAL", True)
        return settings
