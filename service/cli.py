"""The ``gradient-service`` command: serve, or compute in process or through a remote service.

    gradient-service serve --port 8000
    gradient-service gradients problem.json
    gradient-service check problem.json submission.json
    gradient-service check --format prairielearn problem.json submission.json
    gradient-service check-batch problem.json submissions/
    gradient-service exercise --seed 7 --layers 2,3,1 --activations tanh,sigmoid --loss bce
    gradient-service exercise --seed 7 --n-in 3 --layer-specs '[...]' --loss svm --targets labels

The computing subcommands run the service's own app in process (the same core,
schemas and messages, no server needed), or call ``--url`` through the Python
client; both print the service's answer byte for byte. A refused input prints
the problem document on stderr and exits 2; a service or network failure exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from service.core.grading_options import FORMATS

EXIT_INVALID, EXIT_FAILURE = 2, 1
INVALID_STATUSES = (400, 413, 415, 422)


class Refused(Exception):
    """The answer was a problem document (status, body)."""

    def __init__(self, status: int | None, body: bytes):
        super().__init__(status)
        self.status, self.body = status, body


def _in_process(path: str, body: dict[str, Any]) -> bytes:
    from service import create_app

    logging.getLogger("gradient.access").disabled = True  # stdout carries the answer only
    app = create_app({"RATELIMIT_ENABLED": False})
    response = app.test_client().post(path, json=body)
    if response.status_code != 200:
        raise Refused(response.status_code, response.get_data())
    return response.get_data()


def _remote(url: str, api_key: str | None, path: str, body: dict[str, Any]) -> bytes:
    from gradient_client import GradientClient, GradientServiceError

    client = GradientClient(url, api_key=api_key)
    try:
        return client.post_raw(path, body).content
    except GradientServiceError as error:
        raise Refused(error.status, json.dumps(error.problem).encode()) from None


def _load(path: str) -> dict[str, Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _call(args: argparse.Namespace, path: str, body: dict[str, Any]) -> int:
    try:
        if args.url:
            answer = _remote(args.url, args.api_key, path, body)
        else:
            answer = _in_process(path, body)
    except Refused as refused:
        sys.stderr.buffer.write(refused.body + b"\n")
        return EXIT_INVALID if refused.status in INVALID_STATUSES else EXIT_FAILURE
    sys.stdout.buffer.write(answer + b"\n")
    return 0


def _gradients(args: argparse.Namespace) -> dict[str, Any]:
    return _load(args.problem)


def _check(args: argparse.Namespace) -> dict[str, Any]:
    submission = _load(args.submission)
    body = {**_load(args.problem), "submission": submission.get("submission", submission)}
    if args.strict_shapes:
        body["strict_shapes"] = True
    if args.reveal:
        body["reveal"] = True
    if args.format != "json":
        body["format"] = args.format
    return body


def _check_batch(args: argparse.Namespace) -> dict[str, Any]:
    """Every *.json file of the folder is one student's submission, the student its name
    without .json, in name order.  A file that is not JSON is sent as its text, so that it
    is graded as broken like any other submission the student broke."""
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: expected a folder of submission files (*.json)")
    entries = []
    for path in sorted(folder.glob("*.json")):
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            submission = json.loads(text)
        except ValueError:
            submission = text
        if isinstance(submission, dict) and "submission" in submission:
            submission = submission["submission"]
        entries.append({"student": path.stem, "submission": submission})
    if not entries:
        raise ValueError(f"{folder}: no submission files (*.json) in it")
    body = {**_load(args.problem), "submissions": entries}
    for option in ("strict_shapes", "reveal"):
        if getattr(args, option):
            body[option] = True
    if args.format != "json":
        body["format"] = args.format
    if args.assignment:
        body["assignment"] = args.assignment
    return body


def _exercise(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"seed": args.seed, "loss": args.loss}
    if args.layers is not None:
        body["layer_sizes"] = [int(n) for n in args.layers.split(",")]
    if args.activations is not None:
        body["activations"] = args.activations.split(",")
    if args.layer_specs is not None:  # not JSON: a ValueError, "Bad input" (exit 2)
        body["layers"] = json.loads(args.layer_specs)
    options = ("n_in", "targets", "reduction", "batch_size", "convention", "bias_shape")
    for option in (*options, "dz_scale", "decimals"):
        if getattr(args, option) is not None:
            body[option] = getattr(args, option)
    return body


def _serve(args: argparse.Namespace) -> int:
    if args.host:
        os.environ["HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    if args.workers:
        os.environ["WEB_CONCURRENCY"] = str(args.workers)
    from gunicorn.app.wsgiapp import run

    sys.argv = ["gunicorn", "--config", "python:service.operations.gunicorn_conf"]
    run()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradient-service",
        description="Neural-network gradients: serve the API, or compute without a server.",
        epilog="example: gradient-service serve --port 8000\n"
        "example: gradient-service gradients examples/problem.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP service under gunicorn",
        description="Run the service under gunicorn (settings: HOST, PORT, WEB_CONCURRENCY).",
        epilog="example: gradient-service serve --port 8080",
    )
    serve.add_argument("--host", help="address to bind (default $HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default $PORT or 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: CPU count)")
    serve.set_defaults(run=_serve)

    def computing(name: str, help: str, example: str, build) -> argparse.ArgumentParser:
        command = commands.add_parser(
            name,
            help=help,
            description=help + " In process unless --url is given.",
            epilog=f"example: {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument("--url", help="call this service instead of computing in process")
        command.add_argument(
            "--api-key",
            default=os.environ.get("GRADIENT_API_KEY"),
            help="API key for --url (default $GRADIENT_API_KEY)",
        )
        command.set_defaults(
            build=build,
            path={
                "gradients": "/v1/gradients",
                "check": "/v1/check",
                "check-batch": "/v1/check/batch",
                "exercise": "/v1/exercises",
            }[name],
        )
        return command

    gradients = computing(
        "gradients",
        "Print the /v1/gradients answer for a problem file.",
        "gradient-service gradients examples/problem.json",
        _gradients,
    )
    gradients.add_argument("problem", help="the request body as a JSON file (- for stdin)")

    check = computing(
        "check",
        "Grade a submission against a problem; print the /v1/check answer.",
        "gradient-service check examples/problem.json examples/submission.json",
        _check,
    )
    check.add_argument("problem", help="the problem, as for gradients")
    check.add_argument("submission", help='{"layers": [...], "loss": ...} as a JSON file')
    check.add_argument("--strict-shapes", action="store_true", help="only the exact bias shape")
    check.add_argument("--reveal", action="store_true", help="include the expected values")
    check.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="json (the service's answer), gradescope or prairielearn (results.json), junit "
        "(JUnit XML); with the last three a broken submission is a grade of 0, exit 0",
    )

    batch = computing(
        "check-batch",
        "Grade a folder of submissions (one student per *.json file, named by the file) "
        "against one problem; print the /v1/check/batch answer.",
        "gradient-service check-batch examples/problem.json submissions/",
        _check_batch,
    )
    batch.add_argument("problem", help="the problem, as for gradients")
    batch.add_argument("folder", help="a folder of submission files, <student>.json")
    batch.add_argument("--assignment", help="the assignment, for per-student quotas")
    batch.add_argument("--strict-shapes", action="store_true", help="only the exact bias shape")
    batch.add_argument("--reveal", action="store_true", help="include the expected values")
    batch.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="each entry in this format (junit: one testsuites document, a suite per student)",
    )

    exercise = computing(
        "exercise",
        "Print a seeded exercise and its solution (/v1/exercises).",
        "gradient-service exercise --seed 7 --layers 2,3,1 --activations tanh,sigmoid "
        "--loss bce --decimals 2",
        _exercise,
    )
    exercise.add_argument("--seed", type=int, required=True)
    exercise.add_argument("--layers", help="dense layer sizes, e.g. 2,3,1")
    exercise.add_argument("--activations", help="one per dense layer, e.g. tanh,sigmoid")
    exercise.add_argument(
        "--layer-specs",
        dest="layer_specs",
        help="instead of --layers and --activations: the layers to generate as JSON, any kind, "
        """e.g. '[{"units": 4, "activation": "relu", "bias": false}, {"type": "batchnorm"}, """
        """{"type": "dropout", "keep_prob": 0.8}, {"units": 3, "activation": "softmax"}]' """
        "(with --n-in)",
    )
    exercise.add_argument("--n-in", dest="n_in", type=int, help="features, with --layer-specs")
    exercise.add_argument("--targets", help="dense or labels (class labels), with --layer-specs")
    exercise.add_argument("--loss", required=True)
    exercise.add_argument("--reduction")
    exercise.add_argument("--batch-size", dest="batch_size", type=int)
    exercise.add_argument("--convention")
    exercise.add_argument("--bias-shape", dest="bias_shape")
    exercise.add_argument("--dz-scale", dest="dz_scale")
    exercise.add_argument("--decimals", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    try:
        body = args.build(args)
    except (OSError, ValueError) as error:  # an unreadable file or a file that is not JSON
        problem = {"title": "Bad input", "status": 400, "detail": str(error)}
        sys.stderr.write(json.dumps(problem) + "\n")
        return EXIT_INVALID
    return _call(args, args.path, body)


if __name__ == "__main__":
    sys.exit(main())
