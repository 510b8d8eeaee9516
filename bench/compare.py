"""Has a change made the core slower? This checkout against another, timed interleaved.

    python -m bench.compare /tmp/bench-old [rounds] [word ...]

(words: only the items whose name holds one, e.g. ``request`` or ``large``)

``/tmp/bench-old`` is another checkout of this repository (e.g. made with
``git worktree add /tmp/bench-old <commit>``).  One child process per checkout
loads its own code (PYTHONPATH) and the same benchmark problems (its own
bench/cases.py, same seeds); the parent asks them in turn to time one thing,
alternating which goes first, so the two see the same machine at the same
moment, as bench.timing.interleaved does within one process.  The ratio is
this checkout's median over the other's; below 1.05 is the issue's "no
regression by more than 5%".  The ratio of the fastest samples is printed beside
it: on a shared machine the other processes only ever add time, so the minimum
is the steadier estimate of what the code costs.

Measured: the core section's cases (bench.core's "core" figures) and one
/v1/gradients request through the Flask test client (bench.requests' "service"
figures).  The child's code is sent as text, so the other checkout needs no
copy of this module (any commit with bench/cases.py will do).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (what, case, inner loop): inner repeats a short call so a sample is not all timer noise
ITEMS = (
    ("core", "tiny", 200),
    ("core", "medium", 10),
    ("core", "large", 1),
    ("request", "small", 100),
    ("request", "medium", 5),
)

CHILD = r"""
import contextlib, io, os, sys, time

try:
    from service.operations.allocator import keep_freed_memory
except ImportError:  # before service/ was grouped into packages
    from service.allocator import keep_freed_memory
keep_freed_memory()

import orjson
from bench.cases import ALL
from service import create_app
from service.core import compute_gradients

cases = {case.name: case for case in ALL}
problems = {name: case.problem() for name, case in cases.items()}
client = create_app({"RATELIMIT_DEFAULT": "100000000 per minute"}).test_client()
bodies = {name: orjson.dumps(case.request()) for name, case in cases.items()}
JSON = {"Content-Type": "application/json"}


def core(name):
    compute_gradients(problems[name])


def request(name):
    response = client.post("/v1/gradients", data=bodies[name], headers=JSON)
    assert response.status_code == 200, response.data[:300]


for line in sys.stdin:
    what, name, inner = line.split()
    function = {"core": core, "request": request}[what]
    with contextlib.redirect_stdout(io.StringIO()):  # the request log
        function(name)  # warm up, and the first call's allocations
        start = time.perf_counter()
        for _ in range(int(inner)):
            function(name)
        elapsed = (time.perf_counter() - start) / int(inner)
    print(elapsed, flush=True)
"""


class Child:
    """One checkout's code in its own process, timing what it is asked to."""

    def __init__(self, checkout: Path):
        env = {
            **os.environ,
            "PYTHONPATH": str(checkout),
            "OPENBLAS_NUM_THREADS": "1",  # as bench.run and each gunicorn worker
            "OMP_NUM_THREADS": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            cwd=checkout,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def time(self, what: str, case: str, inner: int) -> float:
        self.process.stdin.write(f"{what} {case} {inner}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the child for {what} {case} ended (see its traceback above)")
        return float(line)

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def compare(other: Path, rounds: int, items=ITEMS) -> list[tuple[str, list[float], list[float]]]:
    """Per item, this checkout's samples and the other's, taken in alternating order."""
    here, there = Child(ROOT), Child(other)
    samples = {item: ([], []) for item in items}
    try:
        for r in range(rounds):
            for item in items:
                order = ((0, here), (1, there)) if r % 2 == 0 else ((1, there), (0, here))
                for side, child in order:
                    samples[item][side].append(child.time(*item))
    finally:
        here.stop()
        there.stop()
    return [(f"{what} {case}", *samples[(what, case, inner)]) for what, case, inner in items]


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    other = Path(sys.argv[1]).resolve()
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    words = sys.argv[3:]
    items = [i for i in ITEMS if not words or any(w in f"{i[0]} {i[1]}" for w in words)]
    print(f"this checkout ({ROOT}) against {other}, {rounds} rounds, interleaved")
    print(
        f"  {'':<16} {'this: median (min..max) ms':>32} {'other':>32}"
        "  ratio  of mins  paired ratios"
    )
    for name, mine, theirs in compare(other, rounds, items):
        ratio = statistics.median(mine) / statistics.median(theirs)
        paired = sorted(a / b for a, b in zip(mine, theirs))
        print(
            f"  {name:<16} {_ms(mine):>32} {_ms(theirs):>32}  {ratio:5.3f}"
            f"  {min(mine) / min(theirs):7.3f}  {paired[0]:.2f}..{paired[-1]:.2f}"
            f"  {'regressed > 5%' if ratio > 1.05 else ''}"
        )
    return 0


def _ms(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1e3:.3f} ({min(values) * 1e3:.3f}..{max(values) * 1e3:.3f})"
    )


if __name__ == "__main__":
    sys.exit(main())
