"""POST /v1/check and POST /v1/exercises: grading a student's backprop, and giving them one."""

import time

from flask import current_app
from flask import request as http

from schemas import (
    CheckRequest,
    CheckRequestSchema,
    ExerciseRequest,
    ExerciseRequestSchema,
    ExerciseResponseSchema,
)
from schemas.check import BrokenSubmission
from service.core import compute_gradients
from service.core.budget import Deadline
from service.core.cost import NetworkShape
from service.core.exercises import generate
from service.core.grading_options import UngradableSubmission
from service.core.limits import check_request
from service.core.mistakes import passes_needed
from service.core.request_costs import exercise_cost, grading_cost
from service.grading import Grader, Report
from service.grading_formats import render
from service.http.errors import flatten_messages
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


@blp.route("/check", methods=["POST"])
@blp.arguments(CheckRequestSchema(), example=CHECK_EXAMPLE)
@blp.doc(
    operationId="checkSubmission",
    responses={
        "200": {
            "description": "The graded fields; with format gradescope or prairielearn that "
            "grader's results.json, with junit a JUnit XML testsuite.",
            "content": {
                "application/json": {
                    "schema": one_of("CheckResponse", "GradescopeResults", "PrairieLearnResults")
                },
                "application/xml": {
                    "schema": {"type": "string", "description": "a JUnit XML testsuite"}
                },
            },
        }
    },
)
def check(request: CheckRequest):
    """Grade each submitted field: pass or fail, and for a failure the mistake that explains it.

    With `"format"` gradescope, prairielearn or junit the answer is that grader's document,
    and a submission that cannot be read is a grade of 0 that says why, not a 422.
    """
    started = time.perf_counter()
    report = grade(request)
    body, mimetype = render(report, request.options, time.perf_counter() - started)
    if mimetype == "application/json":
        return current_app.json.response(body)
    return current_app.response_class(body, mimetype=mimetype)


def grade(request: CheckRequest) -> Report | UngradableSubmission:
    """The graded report, or for a submission that could not be read, why (the problem
    itself was valid: the schema refused it otherwise)."""
    problem, submission = request.gradients.problem, request.submission
    net = NetworkShape.of(problem)
    if isinstance(submission, BrokenSubmission):
        # the problem's limits hold whatever the student sent: its own cost, nothing graded
        cost = grading_cost(net, passes_needed(problem), 0, [], body=http.content_length or 0)
        check_request(net, cost, limits())
        ratelimit.meter(cost)
        return ungradable(submission)
    deadline = Deadline(current_app.config["GRADIENT_TIME_BUDGET_SECONDS"])
    cost = grading_cost(
        net,
        passes_needed(problem),
        submission.numbers(),
        submission.fields(),
        request.reveal,
        body=http.content_length or 0,
    )
    check_request(net, cost, limits())
    ratelimit.meter(cost)
    grader = Grader(
        request.gradients,
        request.tolerance,
        request.strict_shapes,
        request.reveal,
        deadline=deadline,
    )
    report = grader.grade(submission)
    metrics.count_diagnoses(r.diagnosis for r in report.results if r.diagnosis)
    return report


def ungradable(broken: BrokenSubmission) -> UngradableSubmission:
    """The submission's errors by path, bounded as a problem document's are."""
    errors, omitted = flatten_messages({"submission": broken.messages})
    return UngradableSubmission(errors, omitted)


def limits():
    return current_app.config["GRADIENT_LIMITS"]


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
