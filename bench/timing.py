"""Median of repetitions, min..max beside it; alternatives measured interleaved in one run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    median: float
    low: float
    high: float

    def ms(self) -> str:
        return f"{self.median * 1e3:9.3f} ms ({self.low * 1e3:.3f}..{self.high * 1e3:.3f})"


def interleaved(functions: dict[str, Callable[[], object]], repeats: int, inner: int = 1):
    """Time each function `repeats` times, alternating, so drift hits all of them alike."""
    for function in functions.values():
        function()  # warm up
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(inner):
                function()
            samples[name].append((time.perf_counter() - start) / inner)
    return {
        name: Stats(statistics.median(values), min(values), max(values))
        for name, values in samples.items()
    }


def budget_repeats(case_name: str) -> tuple[int, int]:
    """(repeats, inner loop) per case: enough samples, a bounded total time."""
    return {"tiny": (30, 200), "small": (30, 200), "medium": (30, 10), "large": (9, 1)}[case_name]
