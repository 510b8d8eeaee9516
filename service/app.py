"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api as SmorestApi
from werkzeug.middleware.proxy_fix import ProxyFix

from schemas import (
    CheckResponseSchema,
    GradescopeResultsSchema,
    PrairieLearnResultsSchema,
    ProblemDetailsSchema,
)
from schemas.batch import (
    BatchCheckResultSchema,
    BatchGradescopeResultSchema,
    BatchPrairieLearnResultSchema,
)

from .config import Config
from .http import docs, openapi, requestlog
from .http.errors import register_error_handlers
from .http.json import JsonProvider
from .operations import quota, ratelimit
from .operations.auth import require_api_key
from .routes import autograder, gradients, health, page


class Api(SmorestApi):
    """flask-smorest's Api with our problem+json errors in place of its own."""

    ERROR_SCHEMA = ProblemDetailsSchema

    def _register_error_handlers(self):
        register_error_handlers(self._app)

    def _register_responses(self):
        # Ours (service.http.openapi), problem+json with their headers, in place of one per status.
        openapi.register_components(self.spec)

    def _register_etag_headers(self):
        pass  # no ETags here

    def _register_pagination_header(self):
        pass  # nothing is paginated: its schema would be an unused component


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
    limit = ratelimit.init_app(app)
    quota.init_app(app, limit.store if limit else None)
    app.before_request(require_api_key)

    app.config["API_SPEC_OPTIONS"] = openapi.spec_options(app.config)
    api = Api(app, spec_kwargs={"extra_plugins": [openapi.ContractPlugin()]})
    api.ma_plugin.converter.add_attribute_function(openapi.array_to_openapi)
    api.ma_plugin.converter.add_attribute_function(openapi.nullable_nested_to_openapi)
    api.ma_plugin.converter.add_attribute_function(openapi.nullable_enum_to_openapi)
    api.ma_plugin.converter.add_attribute_function(openapi.gradable_to_openapi)
    api.ma_plugin.converter.add_attribute_function(openapi.layer_to_openapi)
    openapi.register_layer_types(api.spec)
    # /v1/check answers one of three documents, so they are registered by name
    api.spec.components.schema("CheckResponse", schema=CheckResponseSchema)
    api.spec.components.schema("GradescopeResults", schema=GradescopeResultsSchema)
    api.spec.components.schema("PrairieLearnResults", schema=PrairieLearnResultsSchema)
    # and each /v1/check/batch entry is one of these, with its student
    api.spec.components.schema("BatchCheckResult", schema=BatchCheckResultSchema)
    api.spec.components.schema("BatchGradescopeResult", schema=BatchGradescopeResultSchema)
    api.spec.components.schema("BatchPrairieLearnResult", schema=BatchPrairieLearnResultSchema)
    api.register_blueprint(gradients.blp)
    api.register_blueprint(autograder.blp)
    api.register_blueprint(health.blp)
    app.register_blueprint(health.operations)
    app.register_blueprint(docs.blp)
    app.register_blueprint(page.blp)
    return app
