"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api as SmorestApi
from werkzeug.middleware.proxy_fix import ProxyFix

from schemas import Array, CheckResponseSchema, GradescopeResultsSchema, ProblemDetailsSchema

from . import docs, ratelimit, requestlog
from .auth import require_api_key
from .config import Config
from .errors import PROBLEM_MIMETYPE, register_error_handlers
from .json import JsonProvider
from .routes import autograder, gradients, health, page


class Api(SmorestApi):
    """flask-smorest's Api with our problem+json errors in place of its own."""

    ERROR_SCHEMA = ProblemDetailsSchema

    def _register_error_handlers(self):
        register_error_handlers(self._app)

    def _register_responses(self):
        # flask-smorest documents its error responses with the success content type.
        self.DEFAULT_RESPONSE_CONTENT_TYPE = PROBLEM_MIMETYPE
        try:
            super()._register_responses()
        finally:
            del self.DEFAULT_RESPONSE_CONTENT_TYPE


def _array_to_openapi(self, field, **kwargs) -> dict:
    """Describe an Array field as nested JSON arrays of numbers."""
    if not isinstance(field, Array):
        return {}
    number = {"type": "number", "format": "double"}
    variants = []
    for ndim in field.ndims:
        schema = number
        for _ in range(ndim):
            schema = {"type": "array", "items": schema}
        variants.append(schema)
    variants.append(BINARY_ARRAY)
    return {"oneOf": variants}


#: The binary form of any array field (schemas/binary.py).
BINARY_ARRAY = {
    "type": "object",
    "required": ["dtype", "shape", "data"],
    "additionalProperties": False,
    "properties": {
        "dtype": {"type": "string", "enum": ["float64", "float32"]},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 8},
        "data": {"type": "string", "format": "byte", "description": "little-endian, C order"},
    },
}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; settings come from the environment, then ``test_config``."""
    app = Flask(__name__)
    app.json = JsonProvider(app)
    app.config.from_mapping(Config.from_env())
    if test_config:
        app.config.from_mapping(test_config)

    if app.config["GRADIENT_TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["GRADIENT_TRUSTED_PROXIES"])

    # Order matters: the request id first, then the rate limit (which counts failed
    # authentications per address too), then the key check.
    requestlog.init_app(app)
    ratelimit.init_app(app)
    app.before_request(require_api_key)

    api = Api(app)
    api.ma_plugin.converter.add_attribute_function(_array_to_openapi)
    # /v1/check answers one of two documents, so they are registered by name
    api.spec.components.schema("CheckResponse", schema=CheckResponseSchema)
    api.spec.components.schema("GradescopeResults", schema=GradescopeResultsSchema)
    api.register_blueprint(gradients.blp)
    api.register_blueprint(autograder.blp)
    api.register_blueprint(health.blp)
    app.register_blueprint(health.operations)
    app.register_blueprint(docs.blp)
    app.register_blueprint(page.blp)
    return app
