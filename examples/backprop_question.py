"""The two-layer backprop question the offline graders share (prairielearn_grader.py,
junit_grader.py): its exercise, the student's run on it, and the service's command line
called in this process (no server, no network).

The student writes ``backprop(X, y, theta1, b1, theta2, b2)`` returning dW1, db1, dz2, dW2
and db2 (examples/student_solution.py, bug included).
"""

import contextlib
import importlib.util
import io
import json
import os

import numpy as np

from service.cli import main as gradient_service

#: What the student's backprop returns, and where each array goes in the submission.
RETURNED = {
    "dW1": (0, "dW"),
    "db1": (0, "db"),
    "dz2": (1, "dz"),
    "dW2": (1, "dW"),
    "db2": (1, "db"),
}


class StudentError(Exception):
    """The student's code failed, or returned what cannot be sent: theirs to fix."""


def run(*arguments):
    """``gradient-service <arguments>`` in this process: (exit code, stdout, stderr)."""
    out, err = io.TextIOWrapper(io.BytesIO()), io.TextIOWrapper(io.BytesIO())
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = gradient_service(list(arguments))
    out.flush(), err.flush()
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()


def exercise(seed):
    """The variant's problem: a 2-3-1 sigmoid network, half squared error, summed."""
    code, answer, refused = run(
        *("exercise", "--seed", str(seed), "--layers", "2,3,1"),
        *("--activations", "sigmoid,sigmoid", "--loss", "half_mse", "--reduction", "sum"),
        *("--bias-shape", "row", "--decimals", "2"),
    )
    if code != 0:
        raise RuntimeError(f"the exercise could not be made: {refused}")  # the question's fault
    return json.loads(answer)["problem"]


def submission(problem, student_file):
    """The student's arrays for ``problem`` as a /v1/check submission, or StudentError."""
    spec = importlib.util.spec_from_file_location("student", student_file)
    module = importlib.util.module_from_spec(spec)
    (first, second) = problem["layers"]
    try:
        spec.loader.exec_module(module)
        grads = module.backprop(
            X=np.array(problem["inputs"]),
            y=np.array(problem["targets"]),
            theta1=np.array(first["weights"]),
            b1=np.array(first["biases"]),
            theta2=np.array(second["weights"]),
            b2=np.array(second["biases"]),
        )
        missing = sorted(set(RETURNED) - set(grads))
    except Exception as error:  # the student's code: any failure is theirs to fix
        raise StudentError(f"Your backprop raised {type(error).__name__}: {error}") from error
    if missing:
        raise StudentError(f"Your backprop's result has no {', '.join(missing)}.")
    layers = [{}, {}]
    for name, (layer, field) in RETURNED.items():
        value = grads[name]
        layers[layer][field] = value.tolist() if isinstance(value, np.ndarray) else value
    try:  # NaN, infinity, or objects JSON cannot hold: nothing the grader can read
        json.dumps(layers, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise StudentError(f"Your arrays cannot be graded: {error}") from error
    return {"layers": layers}


def check(problem, submitted, format, work, **options):
    """The answer of /v1/check in ``format`` (text), computed in this process.

    A submission the service cannot read is a grade of 0 in every autograder format; only
    a fault of the question itself (the problem or the options) raises.
    """
    problem_file = os.path.join(work, "problem.json")
    submission_file = os.path.join(work, "submission.json")
    with open(problem_file, "w") as file:
        json.dump({**problem, **options}, file)
    with open(submission_file, "w") as file:
        json.dump(submitted, file)
    code, answer, refused = run("check", problem_file, submission_file, "--format", format)
    if code != 0:
        raise RuntimeError(f"the grader could not grade: {refused}")
    return answer
