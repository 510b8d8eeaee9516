"""Target 6: peak resident memory of a worker serving the largest request the default
limits accept (base64 arrays, so the 32 MiB body holds the most numbers)."""

from __future__ import annotations

import orjson
import requests

from service.config import Config

from .cases import Case
from .http import Server


def largest_body() -> tuple[bytes, int]:
    """A 1024-1024-1024 network with the largest batch whose base64 body fits the limit."""
    limit = Config.MAX_CONTENT_LENGTH
    batch = 512
    while True:
        case = Case("largest", (1024, 1024, 1024), batch)
        body = orjson.dumps(case.request(binary=True))
        if len(body) <= limit:
            return body, batch
        batch -= 16


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def run(report) -> None:
    body, batch = largest_body()
    server = Server(WEB_CONCURRENCY="1")
    try:
        (worker,) = server.workers()
        before = peak_rss_mib(worker)
        response = requests.post(
            server.url + "/v1/gradients",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=300,
        )
        assert response.status_code == 200, response.text[:300]
        after = peak_rss_mib(worker)
    finally:
        server.stop()
    report.figure(
        f"largest accepted request: 1024-1024-1024, batch {batch}",
        f"{len(body) / 2**20:.1f} MiB body",
    )
    report.figure("worker peak RSS before / after it", f"{before:.0f} / {after:.0f} MiB")
    report.ratio("6. worker peak RSS, MiB", after, 512)
