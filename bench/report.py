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


def run_section(section: str, run) -> int:
    """One section of ``make bench`` run alone (``python -m bench.<module>``), with the
    allocator setting bench.run and every gunicorn worker use; 1 when a target is missed."""
    from service.operations.allocator import keep_freed_memory

    keep_freed_memory()
    report = Report()
    report.section(section)
    run(report)
    print(f"\n{len(report.misses)} target(s) missed: {', '.join(report.misses) or 'none'}")
    return 1 if report.misses else 0
