"""The gradient service: ``gunicorn 'service:create_app()'`` serves it."""

from .app import create_app

__all__ = ["create_app"]
