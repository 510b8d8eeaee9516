"""Bodies that are cheap to send and costly to parse, sent to a fresh real worker: its peak.

    python -m bench.parse_bombs

Each body holds few numbers but many JSON lists; the text's census (service.http.prescan)
prices the parse and refuses them before parsing.  Before it, 11 million "[]" (31.5 MiB) took a
worker from 52 to 1,647 MiB before its 422, and 4 million numbers in rows of one to 788 MiB.
"""

from __future__ import annotations

import requests

from tests.conftest import stop_server
from tests.memory_cases import reset_peak, start_worker, status_kib, workers

ONE_LAYER = b'"layers": [{"weights": [[1.0]], "biases": [0.0], "activation": "identity"}]'
ROWS_OF_ONE = b",".join([b"[0.5]"] * 2_000_000)
BODIES = {
    "11M empty lists": b'{"inputs": [' + b",".join([b"[]"] * 11_000_000) + b"]}",
    "4M numbers in rows of one": b'{"inputs": ['
    + ROWS_OF_ONE
    + b'], "targets": ['
    + ROWS_OF_ONE
    + b"], "
    + ONE_LAYER
    + b', "loss": "mse"}',
}


def main() -> None:
    for name, body in BODIES.items():
        url, server = start_worker()
        try:
            (worker,) = workers(server.pid)
            reset_peak(worker)
            idle = status_kib(worker, "VmRSS") / 1024
            response = requests.post(
                url + "/v1/gradients",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=300,
            )
            peak = status_kib(worker, "VmHWM") / 1024
            print(
                f"{name}: body {len(body) / 2**20:.1f} MiB -> {response.status_code}; "
                f"worker {idle:.0f} -> peak {peak:.0f} MiB (+{peak - idle:.0f})"
            )
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
