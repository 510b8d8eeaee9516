"""The published contract: what /openapi.json says beyond what flask-smorest derives.

flask-smorest documents the request and success bodies from the marshmallow
schemas.  Everything else a client meets is added here, in one place, so the
document is exactly what the service does: the bearer scheme, the headers
every answer carries, every error status each operation can answer (as
problem+json), and the OpenAPI forms of the custom fields (Array, nested
objects that may be null).  tests/conftest.py validates every response the test suite
receives against the served document, so a drift between the two fails a test.
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin
from marshmallow import fields

from schemas import Array, ProblemDetailsSchema
from schemas.batch import Gradable
from schemas.exercise_layers import SPEC_SCHEMAS, LayerSpecField, spec_component_name
from schemas.layers import LAYER_TYPES, LayerField, component_name
from service.operations.auth import PROTECTED_PREFIX

from .errors import PROBLEM_MIMETYPE

SECURITY_SCHEME = "bearerAuth"


def null_only(kind: str) -> dict[str, Any]:
    """OpenAPI 3.0's way to say "null and nothing else": it has no null type, and
    ``nullable`` means nothing without a ``type`` beside it."""
    return {"type": kind, "nullable": True, "enum": [None]}


_INTEGER = {"type": "integer", "minimum": 0}

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The client's X-Request-ID when it is a sane token, else a new one; "
        "quote it in a bug report (problem documents repeat it as request_id).",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    },
    "X-RateLimit-Limit": {
        "description": "Requests allowed per window, per API key (or address) and endpoint.",
        "schema": _INTEGER,
    },
    "X-RateLimit-Remaining": {
        "description": "Requests left in the current window.",
        "schema": _INTEGER,
    },
    "X-RateLimit-Reset": {
        "description": "When the current window ends, in seconds since the Unix epoch.",
        "schema": _INTEGER,
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": _INTEGER,
    },
    "WWW-Authenticate": {
        "description": "The bearer challenge, with error=invalid_token for a wrong key.",
        "required": True,
        "schema": {"type": "string", "example": "Bearer error=invalid_token"},
    },
}

#: X-RateLimit-* ride on every routed /v1/ answer while the limit is on and its store answers.
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _headers(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    headers = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
    for name in required:  # a header optional elsewhere, always sent with this answer
        headers[name] = {**HEADERS[name], "required": True}
    return headers


def _problem(description: str, headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers,
        "content": {PROBLEM_MIMETYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }


_V1 = ("X-Request-ID", *RATE_LIMIT_HEADERS)

#: Named like flask-smorest's own (it refers to UNPROCESSABLE_ENTITY and DEFAULT_ERROR itself).
RESPONSES: dict[str, dict[str, Any]] = {
    "BAD_REQUEST": _problem(
        "The body is not one JSON object: invalid JSON or UTF-8, NaN, a duplicate key, "
        "a top level that is not an object, or a body shorter than its Content-Length.",
        _headers(*_V1),
    ),
    "UNAUTHORIZED": _problem(
        "API keys are configured and the request has no valid 'Authorization: Bearer <key>'.",
        {**_headers(*_V1), **_headers("WWW-Authenticate")},
    ),
    "REQUEST_ENTITY_TOO_LARGE": _problem(
        "The body is larger than GRADIENT_MAX_BODY_BYTES.", _headers(*_V1)
    ),
    "UNSUPPORTED_MEDIA_TYPE": _problem(
        "The Content-Type is not JSON, or the body is compressed (Content-Encoding).",
        _headers(*_V1),
    ),
    "UNPROCESSABLE_ENTITY": _problem(
        "A field is invalid (errors maps each field path to its messages), a limit is "
        "exceeded, or the result is not finite.",
        _headers(*_V1),
    ),
    "FORBIDDEN": _problem(
        "Switched off on this service: reveal, where GRADIENT_ALLOW_REVEAL=false.",
        _headers(*_V1),
    ),
    "TOO_MANY_REQUESTS": _problem(
        "Over the rate limit, the compute budget, or (/v1/check) the student's quota "
        "(GRADIENT_CHECK_QUOTA): wait Retry-After seconds.",
        _headers(*_V1, required=("Retry-After",)),
    ),
    "SERVICE_UNAVAILABLE": _problem(
        "This worker is shutting down, or failed its self-test.",
        _headers("X-Request-ID", "Retry-After"),
    ),
    "DEFAULT_ERROR": _problem(
        "An unexpected failure of the service (500), logged with the request id.",
        _headers(*_V1),  # X-RateLimit-* only on /v1/, as everywhere
    ),
}

#: Every status a /v1/ operation can answer besides its 200 (and the 500 of DEFAULT_ERROR).
V1_ERRORS = {
    "400": "BAD_REQUEST",
    "401": "UNAUTHORIZED",
    "413": "REQUEST_ENTITY_TOO_LARGE",
    "415": "UNSUPPORTED_MEDIA_TYPE",
    "422": "UNPROCESSABLE_ENTITY",
    "429": "TOO_MANY_REQUESTS",
}


def spec_options(config: dict[str, Any]) -> dict[str, Any]:
    """API_SPEC_OPTIONS for this deployment: the key requirement follows GRADIENT_API_KEYS."""
    security: list[dict[str, list[str]]] = [{SECURITY_SCHEME: []}]
    if not config["GRADIENT_API_KEYS"]:
        security.append({})  # no keys configured: a request without one is accepted too
    return {
        **config["API_SPEC_OPTIONS"],
        "servers": [{"url": "/", "description": "the server this document is served from"}],
        "security": security,
    }


def register_components(spec) -> None:
    """The headers, responses and security scheme the operations refer to."""
    spec.components.schema("ProblemDetails", schema=ProblemDetailsSchema)
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, response in RESPONSES.items():
        spec.components.response(name, response, lazy=True)
    spec.components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key, when the deployment sets GRADIENT_API_KEYS; never in "
            "the URL.",
        },
    )


class ContractPlugin(BasePlugin):
    """Adds the error responses and headers to each operation as flask-smorest registers it."""

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            protected = bool(path and path.startswith(PROTECTED_PREFIX))
            if protected:
                for status, name in V1_ERRORS.items():
                    responses.setdefault(status, name)
            else:
                operation["security"] = []  # health checks stay open
            for response in responses.values():
                if isinstance(response, dict) and "$ref" not in response:  # inline: a success
                    response.setdefault("headers", {}).update(
                        _headers(*(_V1 if protected else ("X-Request-ID",)))
                    )


def one_of(*names: str, discriminator: str | None = None, mapping=None) -> dict[str, Any]:
    """A union of named schemas; with ``discriminator`` the property that selects one.

    A layer is ``one_of(..., discriminator="type", mapping={...})`` (layer_to_openapi).
    """
    union: dict[str, Any] = {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in names]}
    if discriminator:
        union["discriminator"] = {"propertyName": discriminator}
        if mapping:
            union["discriminator"]["mapping"] = {
                value: f"#/components/schemas/{name}" for value, name in mapping.items()
            }
    return union


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


def array_to_openapi(self, field, ret: dict, **kwargs) -> dict:
    """Describe an Array field as nested JSON arrays of numbers, or the binary form (or null,
    for an optional one: ``nullable`` means nothing beside a ``oneOf`` without a ``type``)."""
    if not isinstance(field, Array):
        return {}
    number = {"type": "number", "format": "double"}
    variants = []
    for ndim in field.documented_ndims:
        schema = number
        for _ in range(ndim):
            schema = {"type": "array", "items": schema}
        variants.append(schema)
    variants.append(BINARY_ARRAY)
    if ret.pop("nullable", False):
        variants.append(null_only("array"))
    return {"oneOf": variants}


def nullable_nested_to_openapi(self, field, ret: dict, **kwargs) -> dict:
    """A nested object or null: ``oneOf`` the object's schema and null only.

    apispec writes ``anyOf`` with a bare ``{type: object, nullable: true}``, which
    admits any object at all, so the nested schema was never enforced.
    """
    if not (isinstance(field, fields.Nested) and field.allow_none and "anyOf" in ret):
        return {}
    refs = [variant for variant in ret["anyOf"] if "$ref" in variant]
    if len(refs) != 1:
        return {}
    del ret["anyOf"]
    return {"oneOf": [refs[0], null_only("object")]}


def gradable_to_openapi(self, field, ret: dict, **kwargs) -> dict:
    """A batch entry's submission: meant to be a Submission, but any value is accepted (a
    broken one is graded as broken, score 0), so the document accepts any value there."""
    if not isinstance(field, Gradable):
        return {}
    ret.pop("$ref", None)
    ret.pop("allOf", None)
    ret["description"] = (
        "a Submission, as /v1/check's (#/components/schemas/Submission); any other value is "
        "graded as broken (score 0), its entry naming the problem"
    )
    return {}


def nullable_enum_to_openapi(self, field, ret: dict, **kwargs) -> dict:
    """A name from a set, or null: ``anyOf`` the enum and null.

    apispec writes ``nullable: true`` beside an ``enum`` without null, which a validator
    reads as "never null" (3.0.3: nullable does not add null to an enum).  With null
    added to that enum it is valid, but generated clients declare the enum three times.
    """
    if not (field.allow_none and "enum" in ret and ret.get("nullable")):
        return {}
    names = [value for value in ret.pop("enum") if value is not None]
    del ret["nullable"]
    kind = ret.pop("type")
    return {"anyOf": [{"type": kind, "enum": names}, null_only(kind)]}


def register_layer_types(spec) -> None:
    """Each layer type's schema, which a layer is ``oneOf`` (layer_to_openapi); registered
    once the custom fields' converters are in place, since these schemas use them."""
    for kind, layer_type in LAYER_TYPES.items():
        spec.components.schema(
            component_name(kind), component=EXTRA.get(kind, {}), schema=layer_type.schema
        )
    for kind, schema in SPEC_SCHEMAS.items():  # /v1/exercises' layers to generate
        spec.components.schema(spec_component_name(kind), schema=schema)


#: A conv2d layer requires ``type: conv2d``, which DenseLayer's ``type`` enum excludes, so
#: the two are exclusive; Redocly's overlap rule only sees that when both require ``type``,
#: and dense cannot (a layer of before the types, without one, stays valid).  minProperties
#: (true: type and weights) puts the schema outside what the rule analyses.
EXTRA = {"conv2d": {"minProperties": 2}}


def layer_to_openapi(self, field, ret: dict, **kwargs) -> dict:
    """A layer object: one of the layer types' schemas, keyed by its ``type``.

    Each type's schema pins ``type`` to its own name (required by every type but
    dense, where it may be absent), so a validator or a generated client picks
    exactly one.  No ``discriminator``: OpenAPI's requires the property in every
    payload, and a layer of today, without ``type``, must stay valid.
    """
    if isinstance(field, LayerSpecField):
        return one_of(*(spec_component_name(kind) for kind in SPEC_SCHEMAS))
    if not isinstance(field, LayerField):
        return {}
    union = one_of(*(component_name(kind) for kind in LAYER_TYPES))
    return union if len(LAYER_TYPES) > 1 else {"allOf": union["oneOf"]}
