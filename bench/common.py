"""Shared helpers: figures and results, timing, machine info, the table and the JSON file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One measured number, the goal it is held to (if any) and whether it meets it.

    ``passed`` is None for figures without a goal (reported for information).
    """

    scenario: str
    name: str
    value: float
    unit: str
    goal: str = ""
    passed: bool | None = None
    note: str = ""

    def shown(self) -> str:
        """The value with its unit, rounded for reading."""
        value = self.value
        if float(value).is_integer() and abs(value) < 1000:
            text = f"{value:.0f}"
        elif abs(value) >= 1000:
            text = f"{value:,.0f}"
        elif abs(value) >= 100:
            text = f"{value:.1f}"
        elif abs(value) >= 10:
            text = f"{value:.2f}"
        else:
            text = f"{value:.3f}"
        return f"{text} {self.unit}".strip()


@dataclass
class ScenarioResult:
    """What one scenario measured: figures for the table, details for the JSON file."""

    scenario: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def add(
        self, name: str, value: float, unit: str, goal: str = "", passed: bool | None = None, note: str = ""
    ) -> Figure:
        """Record one figure (see :class:`Figure`) and return it."""
        figure = Figure(self.scenario, name, value, unit, goal, passed, note)
        self.figures.append(figure)
        return figure


def at_most(value: float, limit: float) -> bool:
    return value <= limit


def at_least(value: float, limit: float) -> bool:
    return value >= limit


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...``; ``elapsed()`` is the seconds since the block began
    (frozen when the block ends)."""
    start = time.perf_counter()
    end: float | None = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


def run_interruptible(executor: Any) -> Any:
    """``executor.run()`` where Ctrl+C (or SIGTERM) stops the pipeline at once, not gently as the engine would.

    A benchmark interrupted has nothing to finish: the handler asks the engine
    for its fast stop (two interrupts) and the caller sees ``KeyboardInterrupt``
    after ``run()`` has returned with its threads wound down.
    """

    def stop_fast(signum: int, frame: Any) -> None:
        executor.interrupt()
        executor.interrupt()

    previous = {sig: signal.signal(sig, stop_fast) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = executor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if report.interrupted:
        raise KeyboardInterrupt
    return report


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU count, Python and platform, for the JSON file."""
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }


def source_state(root: Path) -> dict[str, Any]:
    """The commit measured, and which measured files differ from it (work in progress).

    ``None`` values when git is not available.
    """
    measured = ["engine", "workers", "crypto_server", "pipelines", "yaml_reader.py"]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--", *measured)
    return {
        "commit": commit.strip() if commit else None,
        "uncommitted_changes": [line[3:] for line in changed.splitlines()] if changed is not None else None,
    }


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------
# Output


def render_table(figures: Iterable[Figure]) -> str:
    """A plain-text table: scenario, figure, value, goal, pass/fail."""
    header = ("scenario", "figure", "value", "goal", "result")
    rows = [
        (
            f.scenario,
            f.name + (f" ({f.note})" if f.note else ""),
            f.shown(),
            f.goal or "-",
            "info" if f.passed is None else ("PASS" if f.passed else "FAIL"),
        )
        for f in figures
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i == 2 else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    partial.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    partial.replace(path)


def result_to_json(result: ScenarioResult) -> dict[str, Any]:
    return {
        "scenario": result.scenario,
        "seconds": round(result.seconds, 3),
        "error": result.error,
        "figures": [asdict(f) for f in result.figures],
        "details": result.details,
    }
