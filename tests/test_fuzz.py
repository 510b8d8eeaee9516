"""Property-based fuzzing of every endpoint from the service's own OpenAPI document.

schemathesis generates valid and invalid requests from /openapi.json and checks
every answer: never a 5xx, the documented status codes, content types, headers
and response schemas. Requests that are schema-valid but break a cross-field
rule (a loss that needs another output activation, shapes that do not chain)
are rightly refused, so the "schema-valid must be accepted" check is left out.
"""

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service import create_app

schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"TESTING": True}))


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_endpoint_answers_as_documented(case):
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
