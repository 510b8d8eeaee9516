"""The ``gradient-service`` command: ``gradient-service serve`` runs gunicorn."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="gradient-service",
        description="Neural-network gradient service.",
        epilog="example: PORT=8000 gradient-service serve",
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
    args = parser.parse_args(argv)

    if args.host:
        os.environ["HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    if args.workers:
        os.environ["WEB_CONCURRENCY"] = str(args.workers)

    from gunicorn.app.wsgiapp import run

    sys.argv = ["gunicorn", "--config", "python:service.gunicorn_conf"]
    run()


if __name__ == "__main__":
    main()
