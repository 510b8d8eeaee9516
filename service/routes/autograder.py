"""POST /v1/check and POST /v1/exercises: grading a student's backprop, and giving them one."""

from flask import current_app
from flask import request as http

from schemas import (
    CheckRequest,
    CheckRequestSchema,
    CheckResponseSchema,
    ExerciseRequest,
    ExerciseRequestSchema,
    ExerciseResponseSchema,
    GradescopeResultsSchema,
)
from service.core import compute_gradients
from service.core.budget import Deadline
from service.core.cost import NetworkShape
from service.core.exercises import generate
from service.core.limits import check_request
from service.core.mistakes import passes_needed
from service.core.request_costs import exercise_cost, grading_cost
from service.grading import Grader, gradescope_results
from service.http.openapi import one_of
from service.operations import metrics, ratelimit

from .blueprint import Blueprint

blp = Blueprint(
    "autograder",
    __name__,
    url_prefix="/v1",
    description="Grade a student's backpropagation field by field, and generate exercises.",
)

CHECK_EXAMPLE = {
    "inputs": [[0.5, -1.0], [1.5, 2.0]],
    "targets": [[1.0], [0.0]],
    "layers": [
        {"weights": [[0.1, -0.2], [0.4, 0.5]], "biases": [[0.0, 0.1]], "activation": "sigmoid"},
        {"weights": [[0.7], [-0.8]], "biases": [[0.2]], "activation": "sigmoid"},
    ],
    "loss": "half_mse",
    "reduction": "sum",
    "submission": {"layers": [None, {"db": [[0.1], [-0.05]]}]},
}


CHECK_RESPONSE, GRADESCOPE_RESULTS = CheckResponseSchema(), GradescopeResultsSchema()


@blp.route("/check", methods=["POST"])
@blp.arguments(CheckRequestSchema(), example=CHECK_EXAMPLE)
@blp.doc(
    operationId="checkSubmission",
    responses={
        "200": {
            "description": "The graded fields; a Gradescope results.json with format=gradescope.",
            "content": {
                "application/json": {"schema": one_of("CheckResponse", "GradescopeResults")}
            },
        }
    },
)
def check(request: CheckRequest):
    """Grade each submitted field: pass or fail, and for a failure the mistake that explains it.

    With `"format": "gradescope"` the answer is a Gradescope results.json document instead.
    """
    deadline = Deadline(current_app.config["GRADIENT_TIME_BUDGET_SECONDS"])
    problem, submission = request.gradients.problem, request.submission
    net = NetworkShape.of(problem)
    cost = grading_cost(
        net,
        passes_needed(problem),
        submission.numbers(),
        submission.fields(),
        request.reveal,
        body=http.content_length or 0,
    )
    check_request(net, cost, current_app.config["GRADIENT_LIMITS"])
    ratelimit.meter(cost)
    grader = Grader(
        request.gradients,
        request.tolerance,
        request.strict_shapes,
        request.reveal,
        deadline=deadline,
    )
    report = grader.grade(request.submission)
    metrics.count_diagnoses(r.diagnosis for r in report.results if r.diagnosis)
    if request.format == "gradescope":
        return current_app.json.response(GRADESCOPE_RESULTS.dump(gradescope_results(report)))
    return current_app.json.response(CHECK_RESPONSE.dump(report))


@blp.route("/exercises", methods=["POST"])
@blp.arguments(
    ExerciseRequestSchema(),
    example={
        "seed": 7,
        "layer_sizes": [2, 3, 1],
        "activations": ["tanh", "sigmoid"],
        "loss": "bce",
        "decimals": 2,
    },
)
@blp.response(200, ExerciseResponseSchema)
@blp.doc(operationId="createExercise")
def exercises(request: ExerciseRequest):
    """A reproducible problem from a seed, and its solution: the same request, the same bytes."""
    deadline = Deadline(current_app.config["GRADIENT_TIME_BUDGET_SECONDS"])
    spec = request.spec
    net = NetworkShape.of_sizes(spec.batch_size, spec.layer_sizes, spec.activations)
    cost = exercise_cost(net, spec.loss)
    check_request(
        net,
        cost,
        current_app.config["GRADIENT_LIMITS"],
        layers_field="layer_sizes",
        smaller="ask for a smaller batch_size, or fewer and narrower layers",
    )
    ratelimit.meter(cost)
    problem = generate(spec, deadline)
    laid_out = request.lay_out(problem)
    return {
        "problem": request.problem_document(laid_out),
        "solution": laid_out.present(compute_gradients(problem, deadline=deadline)),
    }
