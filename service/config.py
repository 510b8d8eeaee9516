"""Configuration: one class, every setting from an environment variable with a default.

| variable                 | default     | meaning                                          |
|--------------------------|-------------|--------------------------------------------------|
| GRADIENT_MAX_BODY_BYTES  | 33554432    | request bodies larger than this get 413          |
| GRADIENT_MAX_ELEMENTS    | 4000000     | numbers across all arrays of one request         |
| GRADIENT_MAX_LAYERS      | 64          | layers in one request                            |
| GRADIENT_MAX_FLOPS       | 20000000000 | estimated forward + backward floating-point ops  |
| GRADIENT_MAX_CHECK_PARAMETERS | 5000   | parameters a numerical gradient check may nudge  |

The server's own settings (HOST, PORT, WEB_CONCURRENCY) are read by
deploy/gunicorn.conf.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from service.core import Limits


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


class Config:
    """Flask settings; ``from_env`` reads them when the app is created, not at import."""

    API_TITLE = "Gradient service"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    #: served by the service itself (see service.docs): the page works offline
    OPENAPI_SWAGGER_UI_URL = "/docs/static/"
    API_SPEC_OPTIONS = {
        "info": {
            "description": (
                "Forward activations, loss and every layer's dW and db for a dense network, "
                "computed exactly in float64. Errors are RFC 9457 problem+json."
            )
        }
    }

    MAX_CONTENT_LENGTH = 32 * 1024 * 1024
    GRADIENT_LIMITS = Limits()

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
        )
        return settings
