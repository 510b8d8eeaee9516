"""Property-based fuzzing of every endpoint from the service's own OpenAPI document.

schemathesis generates valid and invalid requests from /openapi.json and checks
every answer: never a 5xx, the documented status codes, content types, headers
and response schemas. Requests that are schema-valid but break a cross-field
rule (a loss that needs another output activation, shapes that do not chain)
are rightly refused, so the "schema-valid must be accepted" check is left out.
"""

import copy
import json
import random

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service import create_app

schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app({"TESTING": True}))


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_endpoint_answers_as_documented(case):
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


COURSE_NETWORK = {
    "inputs": [[1.0, 2.0], [0.5, -1.0], [-1.5, 0.5], [2.0, 0.0]],
    "targets": [2, 0, 1, 2],
    "layers": [
        {"weights": [[0.2, -0.1, 0.4], [0.3, 0.1, -0.2]], "activation": "identity"},
        {
            "type": "batchnorm",
            "gamma": [1.0, 0.5, 2.0],
            "beta": [0.0, 0.1, -0.1],
            "running_mean": [0.0, 0.0, 0.0],
            "running_var": [1.0, 1.0, 1.0],
            "variance": "unbiased",
            "activation": "relu",
        },
        {"type": "layernorm", "gamma": [1.0, 0.5, 2.0], "beta": [0.0, 0.1, -0.1]},
        {"type": "dropout", "keep_prob": 0.75, "seed": 3},
        {"type": "dropout", "keep_prob": 0.5, "mask": [[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 0]]},
        {
            "weights": [[0.5, -0.5, 0.1], [0.2, 0.3, -0.4], [-0.3, 0.1, 0.6]],
            "activation": "softmax",
        },
    ],
    "loss": "cross_entropy",
}
#: what a careless client puts where a layer field belongs
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    1.5,
    1e308,
    "x",
    [],
    [[]],
    [1],
    [[1, 2]],
    {},
    2**70,
    [0.0, 0.0, 0.0],
    [-1.0, 0, 1],
    [[1], [2], [3]],
    "eval",
    "unbiased",
    "dropout",
]
LAYER_KEYS = [
    "type",
    "gamma",
    "beta",
    "running_mean",
    "running_var",
    "mode",
    "variance",
    "momentum",
    "eps",
    "keep_prob",
    "seed",
    "mask",
    "weights",
    "biases",
    "activation",
]


def mutated(rng: random.Random) -> dict:
    """The course network with one to three fields of its layers replaced, removed or added."""
    request = copy.deepcopy(COURSE_NETWORK)
    for _ in range(rng.randint(1, 3)):
        layer = rng.choice(request["layers"])
        if rng.random() < 0.8:
            layer[rng.choice(LAYER_KEYS)] = rng.choice(ODD_VALUES)
        else:
            layer.pop(rng.choice(list(layer)), None)
    return request


@pytest.mark.parametrize("seed", range(4))
def test_mutated_course_layers_get_an_answer_or_a_422_never_a_500(seed):
    client = create_app({"TESTING": True}).test_client()
    rng = random.Random(seed)
    statuses = set()
    for _ in range(100):
        request = mutated(rng)
        request |= {"include": ["dx"], "gradient_check": True, "learning_rate": 0.1}
        response = client.post(
            "/v1/gradients", data=json.dumps(request), content_type="application/json"
        )
        assert response.status_code in (200, 422), (response.status_code, request)
        statuses.add(response.status_code)
        check = {
            k: v
            for k, v in request.items()
            if k not in ("include", "gradient_check", "learning_rate")
        }
        check["submission"] = {"layers": [{"dx": [[0.0]]} for _ in request["layers"]]}
        response = client.post("/v1/check", data=json.dumps(check), content_type="application/json")
        assert response.status_code in (200, 422), (response.status_code, check)
    assert statuses == {200, 422}  # the mutations reach the computation, not only the parser
