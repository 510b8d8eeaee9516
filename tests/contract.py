"""Every answer the test suite receives, checked against the served /openapi.json.

tests/conftest.py makes ``ContractClient`` the test client of every Flask app the
suite creates, so each request a test sends through ``app.test_client()`` has
its response validated against the document: status, content type, body schema,
documented headers; a header the document does not list fails too.  A body that is not
JSON (JUnit XML) must be documented as a string, and parse when it is XML.

openapi-core validates the first answer of each (operation, status, content
type) in full.  It resolves the document anew on every call (about 50 ms an
answer here, more than the request itself), so every answer, that first one
included, is also checked by cached validators: each documented header by
openapi-schema-validator's OAS30ReadValidator (the class openapi-core uses for
responses), the body by jsonschema-rs (in Rust: a body of thousands of numbers
took 10 ms and more in Python) against the media type's schema read as the
JSON Schema draft 4 it is (``nullable`` -> a "null" type, nothing else
differs here).  When jsonschema-rs refuses a body, OAS30ReadValidator says why.

What is not an API operation is skipped by rule, listed in NOT_OPERATIONS: the
page and its assets, the Swagger UI, the document itself, the Prometheus text.
An unknown path (404) or method (405) is checked as problem+json (with Allow
for 405).  Any other route the document does not describe is a failure.
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import cache
from xml.etree import ElementTree

import jsonschema_rs
from flask.testing import FlaskClient
from openapi_core import Config, OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_schema_validator import OAS30ReadValidator, OAS30Validator, oas30_format_checker
from werkzeug.test import TestResponse

from service import create_app

PROBLEM = "application/problem+json"

#: Paths (exact, or a prefix when ending in /) served by the app that are not API operations.
NOT_OPERATIONS = ("/", "/page/", "/docs", "/docs/", "/metrics", "/openapi.json")

#: Headers every HTTP answer may carry without the document naming them.
TRANSPORT_HEADERS = {"content-type", "content-length"}

#: Methods Flask answers for every route by itself.
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}


class AnsweredRequest(WerkzeugOpenAPIRequest):
    """The request a response answers; its body was read by the app and is not needed."""

    @property
    def body(self) -> bytes:
        return b""


class Contract:
    """The served document, parsed once, and the checks every response goes through."""

    def __init__(self, document: dict):
        self.document = document
        self.openapi = OpenAPI.from_dict(
            document,
            # XML is documented as a string (of JUnit XML), not as a schema of its elements
            config=Config(
                extra_media_type_deserializers={PROBLEM: json.loads, "application/xml": _text}
            ),
        )
        self.problem_schema = OAS30Validator(
            document["components"]["schemas"]["ProblemDetails"],
        )
        self.checked = 0
        self._seen_by_openapi_core: set[tuple] = set()
        self._validators: dict[tuple, OAS30ReadValidator] = {}
        self._body_validators: dict[tuple, jsonschema_rs.Draft4Validator] = {}
        self._components = _draft4(document["components"])

    def check(self, response: TestResponse) -> None:
        request = response.request
        path, method = request.path, request.method
        operations = self.document["paths"].get(path)
        if operations is not None and method.lower() in operations:
            self._check_operation(response, operations[method.lower()])
        elif response.status_code in (404, 405) and not _is_page(path):
            self._check_unrouted(response)
        elif _is_page(path) or (operations is not None and method in AUTOMATIC_METHODS):
            return
        else:
            raise AssertionError(
                f"{method} {path} answered {response.status_code} but /openapi.json does not "
                "describe it: document it, or list it in tests/contract.py NOT_OPERATIONS."
            )
        self.checked += 1

    def _check_operation(self, response: TestResponse, operation: dict) -> None:
        request = response.request
        where = f"{request.method} {request.path} answered {response.status_code}"
        key = (request.path, request.method, response.status_code, response.mimetype)
        if key not in self._seen_by_openapi_core:
            try:
                self.openapi.validate_response(
                    AnsweredRequest(request), WerkzeugOpenAPIResponse(response)
                )
            except Exception as error:  # openapi-core's errors say little without their cause
                raise AssertionError(_explain(response, error)) from error
            self._seen_by_openapi_core.add(key)

        documented = self._resolve(
            operation["responses"].get(str(response.status_code))
            or operation["responses"]["default"]
        )
        media = documented.get("content", {}).get(response.mimetype)
        assert media is not None, f"{where} as {response.mimetype}, which it does not document"
        if response.mimetype.endswith("json"):
            self._validate_body(key, media["schema"], json.loads(response.get_data()), where)
        else:
            _check_text(response, media["schema"], where)

        headers = {
            name.lower(): self._resolve(h) for name, h in documented.get("headers", {}).items()
        }
        for name, header in headers.items():
            value = response.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{where} without its {name} header"
                continue
            if header["schema"].get("type") == "integer":
                assert value.isdigit(), f"{where} with {name}: {value!r}, not an integer"
                value = int(value)
            self._validate((*key, name), header["schema"], value, where, f"header {name}")
        extra = {
            name
            for name in response.headers.keys()  # noqa: SIM118 (Headers iterates pairs)
            if name.lower() not in TRANSPORT_HEADERS and name.lower() not in headers
        }
        assert not extra, f"{where} with headers /openapi.json does not document: {sorted(extra)}"

    def _resolve(self, item: dict) -> dict:
        while "$ref" in item:
            _, section, name = item["$ref"].rsplit("/", 2)
            item = self.document["components"][section][name]
        return item

    def _validate_body(self, key: tuple, schema: dict, body, where: str) -> None:
        validator = self._body_validators.get(key)
        if validator is None:
            root = {"allOf": [_draft4(schema)], "components": self._components}
            validator = jsonschema_rs.Draft4Validator(
                root, validate_formats=True, formats={"byte": _is_base64}
            )
            self._body_validators[key] = validator
        if not validator.is_valid(body):
            self._validate(key, schema, body, where, "body")  # the detailed explanation
            errors = [
                f"{e.message[:200]} at {list(e.instance_path)}" for e in validator.iter_errors(body)
            ]
            raise AssertionError(
                f"{where}: its body does not match /openapi.json:\n" + "\n".join(errors[:8])
            )

    def _validate(self, key: tuple, schema: dict, value, where: str, what: str) -> None:
        validator = self._validators.get(key)
        if validator is None:
            # the schema, with the components its $refs point into
            root = {"allOf": [schema], "components": self.document["components"]}
            validator = OAS30ReadValidator(root, format_checker=oas30_format_checker)
            self._validators[key] = validator
        errors = [
            f"{leaf.message[:200]} at {list(leaf.absolute_path)}"
            for error in validator.iter_errors(value)
            for leaf in _leaves(error)[:8]
        ]
        assert not errors, f"{where}: its {what} does not match /openapi.json:\n" + "\n".join(
            errors
        )

    def _check_unrouted(self, response: TestResponse) -> None:
        where = f"{response.request.method} {response.request.path} ({response.status_code})"
        assert response.mimetype == PROBLEM, f"{where}: {response.mimetype}, not problem+json"
        errors = [e.message for e in self.problem_schema.iter_errors(response.get_json(force=True))]
        assert not errors, f"{where}: not a ProblemDetails document: {errors}"
        if response.status_code == 405:
            assert response.headers.get("Allow"), f"{where}: a 405 without Allow"


def _text(body: bytes | str) -> str:
    return body.decode() if isinstance(body, bytes) else body


def _check_text(response: TestResponse, schema: dict, where: str) -> None:
    """A body that is not JSON (JUnit XML) is documented as a string: it must be text of
    its documented type, and XML that parses when it says it is XML."""
    assert schema.get("type") == "string", f"{where}: a non-JSON body documented as {schema}"
    text = response.get_data(as_text=True)
    if response.mimetype.endswith("xml"):
        try:
            ElementTree.fromstring(text)
        except ElementTree.ParseError as error:
            raise AssertionError(f"{where}: its body is not well-formed XML: {error}") from None


def _draft4(node):
    """An OpenAPI 3.0 schema as JSON Schema draft 4: ``nullable`` becomes a "null" type.

    As in OpenAPI 3.0.3, null is not added to an ``enum``: a nullable enum without null
    refuses null (the issue's first finding).
    """
    if isinstance(node, list):
        return [_draft4(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _draft4(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True and "type" in node:
        converted["type"] = [node["type"], "null"]
    return converted


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_page(path: str) -> bool:
    return any(
        path.startswith(rule) if rule.endswith("/") and rule != "/" else path == rule
        for rule in NOT_OPERATIONS
    )


def _leaves(error) -> list:
    if not error.context:
        return [error]
    return sorted(
        (leaf for inner in error.context for leaf in _leaves(inner)),
        key=lambda leaf: -len(leaf.absolute_path),  # the deepest first: the likeliest cause
    )


def _explain(response: TestResponse, error: Exception) -> str:
    causes, cause = [], error
    while cause is not None:
        causes.append(f"{type(cause).__name__}: {cause}")
        for inner in getattr(cause, "schema_errors", ()) or ():
            for leaf in _leaves(inner)[:8]:  # inside oneOf/anyOf: what each branch missed
                causes.append(f"  {leaf.message[:200]} at {list(leaf.absolute_path)}")
        cause = cause.__cause__ or cause.__context__
    body = response.get_data(as_text=True)
    return (
        f"{response.request.method} {response.request.path} answered {response.status_code} "
        f"against /openapi.json:\n" + "\n".join(causes) + f"\nbody: {body[:500]}"
    )


@cache
def served_contract() -> Contract:
    """The document the app serves, fetched and parsed once per test session."""
    answer = FlaskClient(create_app({"TESTING": True})).get("/openapi.json")
    return Contract(answer.get_json())


class ContractClient(FlaskClient):
    """Flask's test client, validating every answer against the served document."""

    def open(self, *args, **kwargs) -> TestResponse:
        response = super().open(*args, **kwargs)
        served_contract().check(response)
        return response
