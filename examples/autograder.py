"""A complete Gradescope autograder for a two-layer backprop assignment.

Each student gets their own exercise (seeded by their id), runs their own
``backprop`` on it, and the service grades every array and explains each
mistake. Gradescope reads the results from results.json.

    python examples/autograder.py --student examples/student_solution.py \
        --student-id alice@example.edu --out results.json
"""

import argparse
import hashlib
import importlib.util
import json
import os

import numpy as np
import requests


def load_student(path):
    spec = importlib.util.spec_from_file_location("student", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", default="/autograder/submission/solution.py")
    parser.add_argument("--student-id", default=os.environ.get("STUDENT_ID", "student"))
    parser.add_argument("--out", default="/autograder/results/results.json")
    parser.add_argument(
        "--url", default=os.environ.get("GRADIENT_SERVICE", "http://127.0.0.1:8000")
    )
    args = parser.parse_args()

    # 1. The student's own exercise: a 2-3-1 sigmoid network, half squared error, summed.
    seed = int.from_bytes(hashlib.sha256(args.student_id.encode()).digest()[:4], "big")
    exercise = requests.post(
        f"{args.url}/v1/exercises",
        json={
            "seed": seed,
            "layer_sizes": [2, 3, 1],
            "activations": ["sigmoid", "sigmoid"],
            "loss": "half_mse",
            "reduction": "sum",
            "bias_shape": "row",
            "decimals": 2,
        },
        timeout=30,
    )
    exercise.raise_for_status()
    problem = exercise.json()["problem"]

    # 2. Run the student's code on it.
    arrays = {
        "X": np.array(problem["inputs"]),
        "y": np.array(problem["targets"]),
        "theta1": np.array(problem["layers"][0]["weights"]),
        "b1": np.array(problem["layers"][0]["biases"]),
        "theta2": np.array(problem["layers"][1]["weights"]),
        "b2": np.array(problem["layers"][1]["biases"]),
    }
    grads = load_student(args.student).backprop(**arrays)

    # 3. Ask the service to grade every array, in Gradescope's format.
    def as_list(name):
        return np.asarray(grads[name]).tolist()

    check = requests.post(
        f"{args.url}/v1/check",
        json={
            **problem,
            "submission": {
                "layers": [
                    {"dW": as_list("dW1"), "db": as_list("db1")},
                    {"dz": as_list("dz2"), "dW": as_list("dW2"), "db": as_list("db2")},
                ]
            },
            "format": "gradescope",
        },
        timeout=30,
    )
    check.raise_for_status()

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as results:
        json.dump(check.json(), results, indent=2)
    print(check.json()["output"])


if __name__ == "__main__":
    main()
