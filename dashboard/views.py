"""What the pages show, computed from the service's state, the run directories and the price store.

Plain data in, plain data out: no Flask here, so each figure can be checked on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.text import one_line
from service.history import UNFINISHED, RunEntry, list_runs
from service.live import RUNNING
from service.timeline import TIMELINE_NAME, read_timeline

FRESH_SECONDS = 15.0
"""A run directory without a report whose timeline grew this recently is taken as a run in progress."""

THROUGHPUT_WINDOW = 1.0
"""Throughput at a sample: items finished over (at least) this many seconds before it."""

FULL_SHARE = 0.9
"""A queue counts as full when it holds at least this share of its maxsize."""


@dataclass(frozen=True)
class StageNow:
    """One stage's figures in the live view."""

    name: str
    threads: str  # "alive/instances", or "alive" when only that is known
    queue_depth: int
    queue_maxsize: int  # 0: unbounded
    done: int
    expected: int | None
    rate: float
    failed: int
    retries: int
    state: str

    @property
    def queue_share(self) -> float:
        """How full the input queue is, from 0 to 1 (0 for an unbounded queue)."""
        return min(1.0, self.queue_depth / self.queue_maxsize) if self.queue_maxsize else 0.0


@dataclass(frozen=True)
class Now:
    """The live view: what runs now (``source`` says who told), or what ran last and what comes next."""

    state: str  # running, waiting, stopped, or idle (no service: the dashboard alone)
    source: str  # "service", "run directory" (a run of another process, read from its timeline) or ""
    run: str | None  # the run in progress, else the last one
    pipeline: str
    started: str | None
    next_run: str | None
    stages: list[StageNow] = field(default_factory=list)
    last: RunEntry | None = None


def now(snapshot: dict[str, Any] | None, run_dir: Path) -> Now:
    """The live view from the service's ``snapshot`` (``LiveRun.snapshot()``, None without a service).

    While the service runs nothing, a run that another process is making in ``run_dir`` is shown
    from its timeline (``python main.py`` in another terminal), so the dashboard alone is live too.
    """
    runs = list_runs(run_dir)
    if snapshot is not None and snapshot.get("state") == RUNNING:
        return Now("running", "service", snapshot.get("run"), snapshot.get("pipeline") or "",
                   snapshot.get("started"), snapshot.get("next_run"),
                   [_stage_from_status(s) for s in snapshot.get("stages", [])])
    last = next((r for r in runs if r.outcome != UNFINISHED), None)
    active = _run_in_progress(runs)
    if active is not None:
        samples = read_timeline(active.path)
        newest = samples[-1]["stages"] if samples else {}
        stages = [_stage_from_sample(name, figures) for name, figures in newest.items() if isinstance(figures, dict)]
        return Now("running", "run directory", active.name, active.pipeline,
                   active.started.isoformat() if active.started else None, None, stages, last)
    if snapshot is not None:  # waiting or stopped: the stages as the last run left them
        return Now(snapshot.get("state", "stopped"), "service", snapshot.get("run") or (last.name if last else None),
                   snapshot.get("pipeline") or "", None, snapshot.get("next_run"),
                   [_stage_from_status(s) for s in snapshot.get("stages", [])], last)
    return Now("idle", "", last.name if last else None, last.pipeline if last else "", None, None, [], last)


def _run_in_progress(runs: list[RunEntry]) -> RunEntry | None:
    """The newest run without a report whose timeline was written to within :data:`FRESH_SECONDS`."""
    for run in runs:
        if run.outcome != UNFINISHED:
            return None  # runs are newest first: an unfinished one older than a finished one was killed
        try:
            if time.time() - (run.path / TIMELINE_NAME).stat().st_mtime <= FRESH_SECONDS:
                return run
        except OSError:
            continue
    return None


def _stage_from_status(status: dict[str, Any]) -> StageNow:
    counters = status.get("counters") or {}
    return StageNow(
        name=str(status.get("name", "?")),
        threads=f"{status.get('alive', 0)}/{status.get('pool_size') or status.get('instances', 0)}",
        queue_depth=int(status.get("queue_depth", 0)),
        queue_maxsize=int(status.get("queue_maxsize", 0)),
        done=int(status.get("done", 0)),
        expected=status.get("expected"),
        rate=float(status.get("rate", 0.0)),
        failed=int(status.get("failed", 0)) + int(status.get("lost", 0)),
        retries=int(counters.get("http.retries", 0)),
        state=str(status.get("state", "")),
    )


def _stage_from_sample(name: str, figures: dict[str, Any]) -> StageNow:
    def count(key: str) -> int:
        return int(_figure(figures, key))

    return StageNow(
        name=name,
        threads=str(count("threads")),
        queue_depth=count("queue_depth"),
        queue_maxsize=count("queue_maxsize"),
        done=count("done"),
        expected=None,
        rate=_figure(figures, "rate"),
        failed=count("failed"),
        retries=count("retries"),
        state="running",
    )


@dataclass(frozen=True)
class StageTimeline:
    """One stage over a run: each series is [(seconds since the start, value)]."""

    name: str
    throughput: list[tuple[float, float]]  # items finished per second
    queue_depth: list[tuple[float, float]]
    threads: list[tuple[float, float]]
    queue_maxsize: int
    full_share: float  # the share of samples in which the input queue was full
    peak_depth: int
    mean_throughput: float


def timeline(samples: list[dict[str, Any]]) -> list[StageTimeline]:
    """Per stage, in the pipeline's order, the series of a run's timeline samples (see :func:`read_timeline`)."""
    names: dict[str, None] = {}
    for sample in samples:
        names.update(dict.fromkeys(sample["stages"]))
    stages = []
    for name in names:
        points = [(float(s["t"]), s["stages"][name]) for s in samples if isinstance(s["stages"].get(name), dict)]
        depth = [(t, _figure(f, "queue_depth")) for t, f in points]
        maxsize = int(max((_figure(f, "queue_maxsize") for _, f in points), default=0))
        full = sum(1 for _, d in depth if maxsize and d >= FULL_SHARE * maxsize)
        done = [(t, _figure(f, "done")) for t, f in points]
        span = done[-1][0] - done[0][0] if len(done) > 1 else 0.0
        stages.append(StageTimeline(
            name=name,
            throughput=_throughput(done),
            queue_depth=depth,
            threads=[(t, _figure(f, "threads")) for t, f in points],
            queue_maxsize=maxsize,
            full_share=full / len(points) if points else 0.0,
            peak_depth=int(max((d for _, d in depth), default=0)),
            mean_throughput=(done[-1][1] - done[0][1]) / span if span > 0 else 0.0,
        ))
    return stages


def _figure(figures: dict[str, Any], key: str) -> float:
    """A number of a timeline sample; 0 for one that is missing or not a finite number (a damaged file)."""
    value = figures.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return float(value)


def _throughput(done: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Items finished per second at each sample, over the last :data:`THROUGHPUT_WINDOW` seconds (or the
    gap to the previous sample, if longer): smoother than the monitor's per-tick rate."""
    out = []
    start = 0
    for i, (t, count) in enumerate(done):
        while start < i - 1 and done[start + 1][0] <= t - THROUGHPUT_WINDOW:
            start += 1
        if i == 0:
            continue
        t0, count0 = done[min(start, i - 1)]
        out.append((t, max(0.0, (count - count0) / (t - t0)) if t > t0 else 0.0))
    return out


def bottleneck(stages: list[StageTimeline]) -> str:
    """One sentence: which stage held the run back, judged by how long its input queue stayed full."""
    bounded = [s for s in stages if s.queue_maxsize]
    if not bounded:
        return "No stage has a bounded input queue, so the timeline cannot tell which one held the run back."
    worst = max(bounded, key=lambda s: s.full_share)
    if worst.full_share < 0.2:
        return ("No input queue was full for long: the stages kept up with what they were given, "
                "so the first stage (or its source) set the pace.")
    return (f"{worst.name}'s input queue was full in {worst.full_share:.0%} of the samples: it is the slowest "
            f"stage, and the stages before it waited for it. More instances of {worst.name} may help, "
            f"if what it calls keeps up.")


@dataclass(frozen=True)
class FailedItems:
    """The first entries of a run's dead-letter file, and how many it holds in all."""

    path: Path
    entries: list[dict[str, Any]]
    total: int
    shared: bool  # the file is outside the run directory: only the entries written during the run are shown


def failed_items(run: RunEntry, limit: int = 1000) -> FailedItems | None:
    """The run's failed items (None if it has no dead-letter file), read line by line: memory stays
    bounded by ``limit`` whatever the file's size. A file that several runs append to (a pipeline's
    ``dead_letter``) is narrowed to the entries written while this run lasted."""
    path = run.dead_letter_path
    if path is None:
        return None
    shared = path.parent.resolve() != run.path.resolve()
    window = _run_window(run) if shared else None
    entries: list[dict[str, Any]] = []
    total = 0
    for entry in _entries(path):
        if window is not None and not window[0] <= _entry_time(entry) <= window[1]:
            continue
        total += 1
        if len(entries) < limit:
            entries.append(entry)
    return FailedItems(path, entries, total, shared)


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            for line in file:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a half-written last line
                if isinstance(entry, dict):
                    yield entry
    except OSError:
        return


_NEVER = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def _run_window(run: RunEntry) -> tuple[dt.datetime, dt.datetime]:
    if run.started is None:
        return _NEVER, dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    end = run.started + dt.timedelta(seconds=(run.duration or 0.0) + 1.0) if run.duration is not None else \
        dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return run.started - dt.timedelta(seconds=1.0), end


def _entry_time(entry: dict[str, Any]) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(str(entry.get("time")))
    except ValueError:
        return _NEVER
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def item_text(item: Any, limit: int = 300) -> str:
    """An item as one short line of JSON (a dead-letter item may be megabytes)."""
    return one_line(item if isinstance(item, str) else json.dumps(item, default=str, ensure_ascii=False), limit)
