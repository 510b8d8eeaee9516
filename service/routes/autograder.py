"""POST /v1/check, /v1/check/batch and /v1/exercises: grading students' backprop, one or
a whole class at a time, and giving each of them a problem."""

import time

from flask import current_app
from flask import request as http
from marshmallow import ValidationError
from werkzeug.exceptions import Forbidden, TooManyRequests, UnprocessableEntity

from schemas import (
    CheckRequest,
    CheckRequestSchema,
    ExerciseRequest,
    ExerciseRequestSchema,
    ExerciseResponseSchema,
    GradientsRequest,
    GradientsRequestSchema,
)
from schemas.batch import CheckBatchRequest, CheckBatchRequestSchema
from schemas.check import BrokenSubmission
from schemas.exercise_layers import refused_by_gradients
from service.batch import grade_class, render_class
from service.core import compute_gradients
from service.core.budget import Deadline
from service.core.cost import NetworkShape
from service.core.exercise_layers import (
    LayeredSpec,
    generate_layered,
    generation_passes,
    network_shape,
)
from service.core.exercises import generate
from service.core.grading_options import UngradableSubmission
from service.core.limits import check_batch_size, check_request
from service.core.mistakes import passes_needed, reruns_forward
from service.core.request_costs import exercise_cost, grading_cost
from service.grading import Grader, Report
from service.grading_formats import render
from service.http.errors import flatten_messages
from service.http.openapi import one_of
from service.operations import metrics, quota, ratelimit

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


#: What /v1/check and /v1/check/batch may answer besides the rest of /v1/'s errors.
CHECK_ERRORS = {"403": "FORBIDDEN"}
JUNIT = {"application/xml": {"schema": {"type": "string", "description": "JUnit XML"}}}


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
                **JUNIT,
            },
        },
        **CHECK_ERRORS,
    },
)
def check(request: CheckRequest):
    """Grade each submitted field: pass or fail, and for a failure the mistake that explains it.

    With `"format"` gradescope, prairielearn or junit the answer is that grader's document,
    and a submission that cannot be read is a grade of 0 that says why, not a 422.
    With GRADIENT_CHECK_QUOTA set, a request naming its `student` counts against that
    student's quota for the `assignment`: past it, 429 with Retry-After (with an autograder
    format, a grade of 0 that says when the next check is allowed, so the grader records it).
    """
    started = time.perf_counter()
    refuse_reveal(request.reveal)
    report = grade(request)
    body, mimetype = render(report, request.options, time.perf_counter() - started)
    if mimetype == "application/json":
        return current_app.json.response(body)
    return current_app.response_class(body, mimetype=mimetype)


def grade(request: CheckRequest) -> Report | UngradableSubmission:
    """The graded report, or for a submission that could not be read (or is over its
    student's quota, with an autograder format) why: the problem itself was valid."""
    problem, submission = request.gradients.problem, request.submission
    net = NetworkShape.of(problem)
    if isinstance(submission, BrokenSubmission):
        # the problem's limits hold whatever the student sent: its own cost, nothing graded
        cost = grading_cost(
            net,
            passes_needed(problem),
            0,
            [],
            body=http.content_length or 0,
            reruns_forward=reruns_forward(problem),
        )
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
        reruns_forward=reruns_forward(problem),
    )
    check_request(net, cost, limits())
    over = over_quota(request)
    if over is not None:
        return over
    ratelimit.meter(cost)
    report = grader(request, deadline).grade(submission)
    metrics.count_diagnoses(r.diagnosis for r in report.results if r.diagnosis)
    return report


def over_quota(request: CheckRequest) -> UngradableSubmission | None:
    """Count this check against its student's quota: None when it may run; past the quota
    429, or with an autograder format a grade of 0 saying when the next check may run."""
    limit = quota.current()
    if limit is None or request.student is None:
        return None
    retry_after = limit.admit(request.student, request.assignment)
    if retry_after is None:
        return None
    message = limit.refusal(retry_after)
    if not request.options.autograder:
        raise TooManyRequests(message, retry_after=retry_after)
    return UngradableSubmission.over_quota(message, retry_after)


def ungradable(broken: BrokenSubmission) -> UngradableSubmission:
    """The submission's errors by path, bounded as a problem document's are."""
    errors, omitted = flatten_messages({"submission": broken.messages})
    return UngradableSubmission(errors, omitted)


def limits():
    return current_app.config["GRADIENT_LIMITS"]


BATCH_EXAMPLE = {
    **{key: value for key, value in CHECK_EXAMPLE.items() if key != "submission"},
    "assignment": "hw3",
    "submissions": [
        {"student": "s1", "submission": CHECK_EXAMPLE["submission"]},
        {"student": "s2", "submission": {"layers": [None, {"db": [[0.2]]}]}},
    ],
}


@blp.route("/check/batch", methods=["POST"])
@blp.arguments(CheckBatchRequestSchema(), example=BATCH_EXAMPLE)
@blp.doc(
    operationId="checkBatch",
    responses={
        "200": {
            "description": "One result per submission, in order: what /v1/check answers for "
            "it, and its student. A broken submission, or one over its student's quota, "
            "scores 0 and says why. With junit, one testsuites document, a testsuite per "
            "student.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["results"],
                        "additionalProperties": False,
                        "properties": {
                            "results": {
                                "type": "array",
                                "items": one_of(
                                    "BatchCheckResult",
                                    "BatchGradescopeResult",
                                    "BatchPrairieLearnResult",
                                ),
                            }
                        },
                    }
                },
                **JUNIT,
            },
        },
        **CHECK_ERRORS,
    },
)
def check_batch(request: CheckBatchRequest):
    """Grade a whole class's submissions of one problem in one call.

    The reference and every mistaken backward pass are computed once for the problem,
    not once per submission. A submission the student broke is graded as broken (score
    0, its entry naming the problem); it never fails the batch.
    """
    deadline = Deadline(current_app.config["GRADIENT_TIME_BUDGET_SECONDS"])
    refuse_reveal(request.reveal)
    check_batch_size(len(request.entries), limits())
    problem = request.gradients.problem
    net = NetworkShape.of(problem)
    gradable = [entry.submission for entry in request.entries if entry.submission is not None]
    cost = grading_cost(
        net,
        passes_needed(problem),
        sum(submission.numbers() for submission in gradable),
        [field for submission in gradable for field in submission.fields()],
        request.reveal,
        body=http.content_length or 0,
        submissions=len(request.entries),
        broken=len(request.entries) - len(gradable),
        reruns_forward=reruns_forward(problem),
    )
    check_request(net, cost, limits())
    ratelimit.meter(cost, expensive=True)  # up to thousands of gradings: always metered
    limit = quota.current()
    outcomes = grade_class(
        grader(request, deadline),
        request.entries,
        deadline,
        admit=limit.admit if limit else None,
        refusal=limit.refusal if limit else str,
    )
    body, mimetype = render_class(outcomes, request.options)
    if mimetype == "application/json":
        return current_app.json.response(body)
    return current_app.response_class(body, mimetype=mimetype)


def grader(request: CheckRequest | CheckBatchRequest, deadline: Deadline) -> Grader:
    return Grader(
        request.gradients,
        request.tolerance,
        request.strict_shapes,
        request.reveal,
        deadline=deadline,
    )


def refuse_reveal(reveal: bool) -> None:
    """403 for reveal where GRADIENT_ALLOW_REVEAL=false: students must never see answers."""
    if reveal and not current_app.config["GRADIENT_ALLOW_REVEAL"]:
        raise Forbidden(
            "reveal is switched off on this service (GRADIENT_ALLOW_REVEAL=false): it never "
            'answers expected values. Leave "reveal" out; each field still says whether it '
            "passed and which mistake explains it."
        )


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
    if isinstance(spec, LayeredSpec):
        return layered_exercise(request, spec, deadline)
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


def layered_exercise(request: ExerciseRequest, spec: LayeredSpec, deadline: Deadline) -> dict:
    """An exercise from ``layers``: priced, drawn, loaded by /v1/gradients' own schema (its
    rules, its messages), and solved as /v1/gradients solves it."""
    net = network_shape(spec)
    cost = exercise_cost(net, spec.loss, forward_passes=generation_passes(spec))
    check_request(
        net,
        cost,
        current_app.config["GRADIENT_LIMITS"],
        smaller="ask for a smaller batch_size, or fewer and narrower layers",
    )
    ratelimit.meter(cost)
    problem = generate_layered(spec, deadline)
    document = request.layered_document(problem)
    laid_out = as_gradients_request(document)
    return {
        "problem": document,
        "solution": laid_out.present(compute_gradients(laid_out.problem, deadline=deadline)),
    }


#: loads a generated problem as /v1/gradients loads a request (one instance: it keeps no state)
GRADIENTS_SCHEMA = GradientsRequestSchema()


def as_gradients_request(document: dict) -> GradientsRequest:
    """The generated problem loaded by /v1/gradients' schema, from the JSON it answers.

    A combination that endpoint refuses is a 422 at the same field path (the exercise's
    layers line up with the problem's), its message prefixed with why it is there.
    """
    as_json = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in document.items()}
    as_json["layers"] = [
        {k: v.tolist() if hasattr(v, "tolist") else v for k, v in layer.items()}
        for layer in document["layers"]
    ]
    try:
        return GRADIENTS_SCHEMA.load(as_json)
    except ValidationError as error:
        refused = UnprocessableEntity()
        refused.data = {"messages": refused_by_gradients(error.messages)}
        raise refused from None
