"""POST /v1/gradients and POST /v1/neuron: parse, compute, answer in the client's shapes."""

from flask import current_app
from flask import request as http

from schemas import (
    GradientsRequest,
    GradientsRequestSchema,
    GradientsResponseSchema,
    NeuronRequestSchema,
    NeuronResponseSchema,
)
from service.core import (
    NeuronProblem,
    compute_gradients,
    gradient_step,
    neuron_terms,
)
from service.core.budget import Deadline
from service.core.cost import NetworkShape
from service.core.gradient_check import gradient_check
from service.core.limits import check_neuron, check_request
from service.core.request_costs import gradients_cost
from service.http import json
from service.operations import ratelimit

from .blueprint import Blueprint

blp = Blueprint(
    "gradients",
    __name__,
    url_prefix="/v1",
    description="Forward pass and backpropagation through dense layers.",
)


@blp.route("/gradients", methods=["POST"])
@blp.arguments(
    GradientsRequestSchema(),
    example={
        "inputs": [[0.5, -1.0], [1.5, 2.0]],
        "targets": [[1.0], [0.0]],
        "layers": [
            {
                "weights": [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]],
                "biases": [0.0, 0.1, -0.1],
                "activation": "tanh",
            },
            {"weights": [[0.7], [-0.8], [0.9]], "biases": [[0.2]], "activation": "sigmoid"},
        ],
        "loss": "bce",
    },
)
@blp.response(200, GradientsResponseSchema)
@blp.doc(operationId="computeGradients")
def gradients(request: GradientsRequest):
    """Loss, activations, and every layer's dW and db.

    dW and db come back in the layout and shape each layer was sent in.
    """
    deadline = Deadline(current_app.config["GRADIENT_TIME_BUDGET_SECONDS"])
    net = NetworkShape.of(request.problem)
    cost = gradients_cost(
        net,
        request.include,
        request.encoding,
        request.gradient_check,
        learning_rate=request.learning_rate is not None,
        body=http.content_length or 0,
    )
    check_request(net, cost, current_app.config["GRADIENT_LIMITS"], request.gradient_check)
    ratelimit.meter(cost, request.gradient_check)
    result = compute_gradients(request.problem, deadline=deadline, keep_dx="dx" in request.include)
    check = None
    if request.gradient_check:
        check = gradient_check(
            request.problem, result, deadline=deadline, check_dx="dx" in request.include
        )
    updated = None
    if request.learning_rate is not None:
        updated = gradient_step(request.problem, result, request.learning_rate)
    # The answer is built in the response's own shape already: serialised straight by
    # service.http.json (ndarrays natively), it skips a marshmallow dump that would only copy it.
    answer = request.present(result, check, updated)
    return json.response(answer, binary_arrays=request.encoding == "base64")


@blp.route("/neuron", methods=["POST"])
@blp.arguments(
    NeuronRequestSchema(),
    example={
        "x": 1.5,
        "w": 0.8,
        "b": 0.1,
        "y": 1.0,
        "activation": "sigmoid",
        "loss": "bce",
    },
)
@blp.response(200, NeuronResponseSchema)
@blp.doc(operationId="computeNeuron")
def neuron(problem: NeuronProblem):
    """One neuron z = w . x + b: every chain-rule term of dL/db, and one update step."""
    deadline = Deadline(current_app.config["GRADIENT_TIME_BUDGET_SECONDS"])
    limits = current_app.config["GRADIENT_LIMITS"]
    check_neuron(problem, limits, http.content_length or 0)
    return neuron_terms(problem, deadline)
