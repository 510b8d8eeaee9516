"""A complete PrairieLearn external grader for a two-layer backprop question: no server, no
network (PrairieLearn's graders run without one).

PrairieLearn copies the student's files to /grade/student, the question's data to
/grade/data/data.json, and reads /grade/results/results.json.  This grader gives the
question's variant its own exercise (seeded by ``params.seed``), runs the student's
``backprop`` on it, and grades every array with the service's own code, in this process,
through its command line (``gradient-service exercise`` and ``check --format prairielearn``).
A student's code that crashes, or returns arrays that cannot be read, is "not gradable":
the attempt is recorded and the student told what to fix.

    python examples/prairielearn_grader.py --student examples/student_solution.py \
        --data data.json --out results.json
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import traceback

import numpy as np

from service.cli import main as gradient_service

#: Points per field (a path beats a name); the loss is not asked for in this question.
POINTS = {"dW": 2, "db": 1, "dz": 1}


def run(*arguments):
    """``gradient-service <arguments>`` in this process: (exit code, stdout, stderr)."""
    out, err = io.TextIOWrapper(io.BytesIO()), io.TextIOWrapper(io.BytesIO())
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = gradient_service(list(arguments))
    out.flush(), err.flush()
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()


def write_json(path, document):
    with open(path, "w") as file:
        json.dump(document, file, indent=2)


def load_student(path):
    spec = importlib.util.spec_from_file_location("student", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def not_gradable(message, output):
    return {
        "gradable": False,
        "score": 0.0,
        "message": message,
        "output": output,
        "format_errors": {"solution.py": message},
        "tests": [],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", default="/grade/student/solution.py")
    parser.add_argument("--data", default="/grade/data/data.json")
    parser.add_argument("--out", default="/grade/results/results.json")
    parser.add_argument("--work", default="/tmp", help="where the request files are written")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    # 1. The variant's exercise: a 2-3-1 sigmoid network, half squared error, summed.
    params = {}
    if os.path.exists(args.data):
        with open(args.data) as file:
            params = json.load(file).get("params", {})
    code, answer, refused = run(
        "exercise",
        "--seed",
        str(params.get("seed", 0)),
        "--layers",
        "2,3,1",
        "--activations",
        "sigmoid,sigmoid",
        "--loss",
        "half_mse",
        "--reduction",
        "sum",
        "--bias-shape",
        "row",
        "--decimals",
        "2",
    )
    if code != 0:
        sys.exit(f"the exercise could not be made: {refused}")  # the question's fault
    problem = json.loads(answer)["problem"]

    # 2. The student's code on it.
    arrays = {
        "X": np.array(problem["inputs"]),
        "y": np.array(problem["targets"]),
        "theta1": np.array(problem["layers"][0]["weights"]),
        "b1": np.array(problem["layers"][0]["biases"]),
        "theta2": np.array(problem["layers"][1]["weights"]),
        "b2": np.array(problem["layers"][1]["biases"]),
    }
    try:
        grads = load_student(args.student).backprop(**arrays)
        missing = sorted({"dW1", "db1", "dz2", "dW2", "db2"} - set(grads))
        if missing:
            raise KeyError(f"backprop's result has no {', '.join(missing)}")
    except Exception as error:  # the student's code: any failure is theirs to fix
        message = f"Your backprop raised {type(error).__name__}: {error}"
        write_json(args.out, not_gradable(message, traceback.format_exc(limit=-3)))
        return

    # 3. Grade every array, in PrairieLearn's format: an array the service cannot read
    #    (ragged, not numbers) is a grade of 0 that says why, not an error.
    def as_json(name):
        value = grads[name]
        return value.tolist() if isinstance(value, np.ndarray) else value

    submission = {
        "layers": [
            {"dW": as_json("dW1"), "db": as_json("db1")},
            {"dz": as_json("dz2"), "dW": as_json("dW2"), "db": as_json("db2")},
        ]
    }
    problem_file = os.path.join(args.work, "problem.json")
    submission_file = os.path.join(args.work, "submission.json")
    write_json(problem_file, {**problem, "points": POINTS, "partial_credit": "propagated"})
    try:
        with open(submission_file, "w") as file:
            json.dump(submission, file, allow_nan=False)
    except (TypeError, ValueError) as error:  # NaN, infinity, or objects JSON cannot hold
        write_json(args.out, not_gradable(f"Your arrays cannot be graded: {error}", ""))
        return
    code, results, refused = run("check", problem_file, submission_file, "--format", "prairielearn")
    if code != 0:
        sys.exit(f"the grader could not grade: {refused}")  # the question's fault, not theirs
    with open(args.out, "w") as file:
        file.write(results)
    print(json.loads(results)["message"])


if __name__ == "__main__":
    main()
