"""The table the suite prints: figures, and ratios with their targets."""

from __future__ import annotations

from .timing import Stats


class Report:
    def __init__(self) -> None:
        self.rows: list[str] = []
        self.misses: list[str] = []

    def figure(self, name: str, stats: Stats | str) -> None:
        text = stats.ms() if isinstance(stats, Stats) else stats
        self._print(f"  {name:<52} {text}")

    def ratio(self, name: str, value: float, target: float | None, higher: bool = False) -> None:
        if target is None:
            verdict = ""
        else:
            met = value >= target if higher else value <= target
            verdict = f"target {'>=' if higher else '<='} {target:<5} {'met' if met else 'MISSED'}"
            if not met:
                self.misses.append(name)
        self._print(f"  {name:<52} {value:9.3f}   {verdict}")

    def unmeasured(self, name: str, why: str) -> None:
        """A target that could not be measured: one line saying why, and counted as missed."""
        self.misses.append(name)
        self._print(f"  {name:<52} NOT MEASURED: {why}")

    def section(self, title: str) -> None:
        self._print(f"\n{title}")

    def _print(self, line: str) -> None:
        self.rows.append(line)
        print(line, flush=True)
