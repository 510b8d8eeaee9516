"""A complete PrairieLearn external grader for a two-layer backprop question: no server, no
network (PrairieLearn's graders run without one).

PrairieLearn copies the student's files to /grade/student, the question's data to
/grade/data/data.json, and reads /grade/results/results.json.  This grader gives the
question's variant its own exercise (seeded by ``params.seed``), runs the student's
``backprop`` on it, and grades every array with the service's own code, in this process,
through its command line (``check --format prairielearn``; see backprop_question.py).
A student's code that crashes, or returns arrays that cannot be read, is "not gradable":
the attempt is recorded and the student told what to fix.

    python examples/prairielearn_grader.py --student examples/student_solution.py \
        --data data.json --out results.json
"""

import argparse
import json
import os
import traceback

from backprop_question import StudentError, check, exercise, submission

#: Points per field (a path beats a name), and half credit for an error that only comes
#: from a mistake in a later layer.
OPTIONS = {"points": {"dW": 2, "db": 1, "dz": 1}, "partial_credit": "propagated"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", default="/grade/student/solution.py")
    parser.add_argument("--data", default="/grade/data/data.json")
    parser.add_argument("--out", default="/grade/results/results.json")
    parser.add_argument("--work", default="/tmp", help="where the request files are written")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    params = {}
    if os.path.exists(args.data):
        with open(args.data) as file:
            params = json.load(file).get("params", {})
    problem = exercise(params.get("seed", 0))
    try:
        submitted = submission(problem, args.student)
    except StudentError as error:
        results = {
            "gradable": False,
            "score": 0.0,
            "message": str(error),
            "output": traceback.format_exc(limit=-3),
            "format_errors": {"solution.py": str(error)},
            "tests": [],
        }
        with open(args.out, "w") as file:
            json.dump(results, file, indent=2)
        return
    results = check(problem, submitted, "prairielearn", args.work, **OPTIONS)
    with open(args.out, "w") as file:
        file.write(results)
    print(json.loads(results)["message"])


if __name__ == "__main__":
    main()
