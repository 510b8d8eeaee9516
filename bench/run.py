"""Run every benchmark and print the table: python -m bench.run (or make bench)."""

from __future__ import annotations

import os
import sys
import time

# One BLAS thread, as each gunicorn worker has; set before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from service.operations.allocator import keep_freed_memory

from . import batch, conv, core, http, layers, memory, requests, slowclients
from .report import Report

# The allocator settings every gunicorn worker runs with, so that what this process
# measures (the core, its baselines, requests in process) compares like with like.
keep_freed_memory()


def main() -> int:
    started = time.perf_counter()
    report = Report()
    sections = [
        ("Core (single-threaded), targets 1 and 2", core.run),
        (layers.SECTION, layers.run),
        (conv.SECTION, conv.run),
        ("Request handling in process, target 3", requests.run),
        ("HTTP under gunicorn's default configuration, targets 4 and 5", http.run),
        ("Memory, target 6", memory.run),
        ("Slow clients and throughput by worker model (issue 11)", slowclients.run),
        ("A whole class in one call: /v1/check/batch (issue 16)", batch.run),
    ]
    only = set(sys.argv[1:])
    for title, run in sections:
        if only and not any(word in title.lower() for word in only):
            continue
        report.section(title)
        run(report)
    print(f"\n{len(report.misses)} target(s) missed: {', '.join(report.misses) or 'none'}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
