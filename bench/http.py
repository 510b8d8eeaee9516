"""Targets 4 and 5: throughput under gunicorn's default configuration, and the large request
end to end with base64 arrays. The load comes from this machine, bounded in time."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

from service.core import compute_gradients

from .cases import LARGE, SMALL
from .timing import Stats, interleaved

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class Server:
    """A real gunicorn with the default configuration on a free loopback port."""

    def __init__(self, *args: str, **env: str):
        """``args``: gunicorn options after the config (they win over it); ``env``: settings."""
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "GRADIENT_RATELIMIT_DEFAULT": "100000000 per minute",
            **env,
        }
        environment.pop("OPENBLAS_NUM_THREADS", None)  # the server's own config decides
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--config",
                "python:service.operations.gunicorn_conf",
                *args,
                "service:create_app()",
            ],
            cwd=ROOT,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def wrk(url: str, seconds: int, body: bytes | None = None) -> dict:
    """Requests per second, p50 and p99 latency, and non-2xx answers, from Debian's wrk."""
    script = None
    args = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency"]
    if body is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {orjson.dumps(body.decode()).decode()}\n"
        )
        script.close()
        args += ["-s", script.name]
    output = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 30
    ).stdout
    if script:
        os.unlink(script.name)

    def latency(pct: str) -> float:
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }


def run(report) -> None:
    if not shutil.which("wrk"):
        report.figure("4. throughput", "skipped: wrk is not installed (make bench installs it)")
    server = Server()
    try:
        if shutil.which("wrk"):
            small = orjson.dumps(SMALL.request())
            rounds = [("healthz", None), ("small", small), ("healthz", None), ("small", small)]
            results: dict[str, list[dict]] = {"healthz": [], "small": []}
            for name, body in rounds:
                path = "/healthz" if body is None else "/v1/gradients"
                results[name].append(wrk(server.url + path, 5, body))
            for name, runs in results.items():
                best = max(runs, key=lambda r: r["rps"])
                report.figure(
                    f"{name}: requests/s, p50, p99",
                    f"{best['rps']:9.0f} /s  p50 {best['p50']:.2f} ms  p99 {best['p99']:.2f} ms"
                    f"  non-2xx {sum(r['errors'] for r in runs)}"
                    f"  socket errors {best['socket_errors']}",
                )
            ratio = sum(r["rps"] for r in results["small"]) / sum(
                r["rps"] for r in results["healthz"]
            )
            report.ratio("4. small rps / healthz rps", ratio, 0.60, higher=True)

        body = orjson.dumps(LARGE.request(binary=True))
        session = requests.Session()
        problem = LARGE.problem()

        def end_to_end():
            # stream=True and one read of the whole answer: requests' own .content reads
            # in 10 KiB pieces, which alone costs about 45 ms of an 18 MB answer here.
            with session.post(
                server.url + "/v1/gradients",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=120,
                stream=True,
            ) as response:
                answer = b"".join(response.iter_content(chunk_size=None))
            assert response.status_code == 200, answer[:300]

        stats = interleaved(
            {"http": end_to_end, "core": lambda: compute_gradients(problem)}, repeats=15
        )
        report.figure(
            f"large, base64, HTTP end to end ({len(body) / 1e6:.1f} MB body)", stats["http"]
        )
        report.figure("large, core compute in this process", stats["core"])
        report.ratio(
            "5. large base64 HTTP / core", stats["http"].median / stats["core"].median, 1.5
        )
    finally:
        server.stop()


__all__ = ["Server", "Stats", "run"]
