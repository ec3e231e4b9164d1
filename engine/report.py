"""What a run reports: live status per stage, and the final report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.counters import add, summarize

EXIT_OK = 0
EXIT_STAGE_DIED = 1
EXIT_CONFIG = 2
EXIT_UNRECORDED = 3  # the dead-letter file could not be written: the record of failed items is incomplete
EXIT_FAILURES = 4  # finished, but more items failed than max_failures allows (or nothing got through)
EXIT_INTERRUPTED = 130

# RunReport.outcome: the exit code in a word, for scripts reading report.json.
OUTCOMES = {
    EXIT_OK: "done",
    EXIT_STAGE_DIED: "died",
    EXIT_UNRECORDED: "unrecorded",
    EXIT_FAILURES: "failures",
    EXIT_INTERRUPTED: "interrupted",
}


def describe_failures(errors: dict[str, int], lost: int) -> str:
    """``"HTTPError 84, InvalidPrice 3, lost 2"``: failed items by error type, most first, then lost ones."""
    parts = [f"{name} {count:,}" for name, count in sorted(errors.items(), key=lambda e: (-e[1], e[0])) if count]
    if lost:
        parts.append(f"lost {lost:,}")
    return ", ".join(parts)


@dataclass(frozen=True)
class StageStatus:
    """One stage at one moment, as the monitor sees it (for live views and logs)."""

    name: str
    alive: int
    instances: int
    queue_depth: int  # items waiting in the stage's input queue; for display only
    items_in: int
    items_out: int
    failed: int
    lost: int
    rate: float  # items taken per second since the previous status
    expected: int | None  # items the stage will take in all, once every producer is done
    state: str  # running, done, stopped or died
    busy: int = 0  # items taken but not yet finished
    queue_maxsize: int = 0  # maxsize of the stage's input queue (0 = unbounded)
    queue_peak: int = 0  # the deepest the input queue has been so far (sampled by the monitor)
    counters: dict[str, float] = field(default_factory=dict)  # live sum of the stage's worker counters
    queue_name: str = ""  # the name of the stage's input queue
    pool_size: int = 0  # threads the stage aims at now: instances, or the current size of an auto pool
    min_instances: int | None = None  # the bounds of an auto pool (None: a fixed number of threads)
    max_instances: int | None = None

    @property
    def done(self) -> int:
        """Items the stage has finished with, one way or another."""
        return self.items_in - self.busy + self.lost


@dataclass(frozen=True)
class StageReport:
    """One stage at the end of a run."""

    name: str
    instances: int
    items_in: int
    items_out: int
    failed: int
    lost: int
    seconds: float
    restarts: int
    state: str  # done, stopped or died
    counters: dict[str, float] = field(default_factory=dict)  # the workers' counters, summed
    errors: dict[str, int] = field(default_factory=dict)  # failed items by error type (they add up to failed)
    queue_peak: int = 0  # the deepest the input queue has been (sampled every 0.1 s)
    is_source: bool = False
    is_sink: bool = False
    # The pool: its size at the end and its largest (both = instances unless auto), and an auto pool's bounds.
    pool_size: int = 0
    pool_peak: int = 0
    min_instances: int | None = None
    max_instances: int | None = None

    @property
    def no_data(self) -> int:
        """Items that were handled but had nothing to give (the workers' ``no_data`` counter)."""
        return int(self.counters.get("no_data", 0))

    @property
    def stats(self) -> dict[str, Any]:
        """The grouped counters (``http.requests``, ``http.status``...): see :mod:`engine.counters`."""
        return summarize(self.counters)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, as in ``report.json``."""
        return {**asdict(self), "no_data": self.no_data, **self.stats}


@dataclass(frozen=True)
class RunReport:
    """The outcome of :meth:`PipelineExecutor.run`."""

    stages: list[StageReport]
    exit_code: int
    reason: str | None  # one sentence when the run did not simply succeed
    dead_letter_path: Path
    dead_letters: int
    seconds: float
    interrupted: bool = False
    unrecorded: int = 0  # items that failed or were lost but could not be written to the dead-letter file
    failures: int = 0  # items failed or lost, all stages together: what max_failures limits
    attempts: int = 0  # items the stages took in plus those they lost: what a max_failures percentage is of
    delivered: int = 0  # items the sinks (stages without output queues) finished without failing
    max_failures: str = "0"  # the allowance the run was held to, as written: "5" or "2.5%"
    errors: dict[str, int] = field(default_factory=dict)  # failed items by error type, all stages together
    started_at: str = ""  # ISO 8601, UTC
    finished_at: str = ""
    pipeline: dict[str, str | None] = field(default_factory=dict)  # name, and file (None if not from a file)
    config_sha256: str = ""  # of the expanded config: see engine.run_info.config_hash
    version: str = ""  # "git <commit>" of the checkout, else the project's version
    executor: str = "threads"  # what ran the stages: "threads" (engine.PipelineExecutor) or "ray"

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def outcome(self) -> str:
        """The exit code in a word: done, failures, died, unrecorded or interrupted."""
        return OUTCOMES.get(self.exit_code, "unknown")

    def stage(self, name: str) -> StageReport:
        return next(s for s in self.stages if s.name == name)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.stages)

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.stages)

    @property
    def no_data(self) -> int:
        return sum(s.no_data for s in self.stages)

    @property
    def counters(self) -> dict[str, float]:
        """Every stage's counters, summed."""
        return add(s.counters for s in self.stages)

    @property
    def items(self) -> dict[str, int]:
        """The run as a whole: ``in`` to its sources, ``out`` of its sinks, and every failed, no_data, lost."""
        return {
            "in": sum(s.items_in for s in self.stages if s.is_source),
            "out": sum(s.items_out for s in self.stages if s.is_sink),
            "failed": self.failed,
            "no_data": self.no_data,
            "lost": self.lost,
        }

    @property
    def stats(self) -> dict[str, Any]:
        """The run's grouped counters (``http.requests``, ``http.status``...), summed over the stages."""
        return summarize(self.counters)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, as written to ``report.json``."""
        data = asdict(self)
        data["dead_letter_path"] = str(self.dead_letter_path)
        data["outcome"] = self.outcome
        data["stages"] = [s.to_dict() for s in self.stages]
        data["items"] = self.items
        data.update(self.stats)
        return data
