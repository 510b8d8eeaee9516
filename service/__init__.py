"""The gradient service: ``gunicorn 'service:create_app()'`` serves it.

``create_app`` is imported on first use, so that importing
``service.operations.gunicorn_conf`` in gunicorn's master process loads nothing else:
the workers must import prometheus_client only after the config has set
PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'service' has no attribute {name!r}")
