"""What a person sees: a live table of the stages while the pipeline runs, and the final summary."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from engine import RunReport, StageStatus
from engine.monitor import percent, queue_text, threads_text
from engine.report import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, describe_failures

_STATE_STYLE = {"running": "cyan", "done": "green", "stopped": "yellow", "died": "bold red"}

RECENT_SECONDS = 10.0  # the smoothed rate and the "(+n)" changes look back about this far
_RATE_TIME_CONSTANT = RECENT_SECONDS / 2  # older seconds weigh e^(-age/5): a tenth of a weight after ~10 s
_UNKNOWN = "–"


class LiveView:
    """A rich Live table of the stages, redrawn each time the monitor reports.

    It shows the elapsed time and an ETA, and per stage the threads, items in flight,
    queue depth against its maxsize, done/total and %, a smoothed rate, and retries and
    errors with their change over the last ``RECENT_SECONDS``. After ``interrupted()``
    the title says what is left to finish instead of the ETA.

    ``update`` is called from the monitor thread only; rich's Live redraws safely from there.
    """

    def __init__(self, console: Console, title: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._title = title
        self._clock = clock
        self._started = clock()
        self._stages: dict[str, _StageTrack] = {}
        self._interrupts = 0
        self._live = Live(Text(f"{title}: starting..."), console=console, transient=True, auto_refresh=False)

    def __enter__(self) -> "LiveView":
        self._started = self._clock()
        self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._live.__exit__(kind, error, tb)

    def interrupted(self, count: int) -> None:
        """The run was asked to stop ``count`` times so far; safe to call from a signal handler (no drawing)."""
        self._interrupts = count

    def update(self, statuses: list[StageStatus]) -> None:
        self._live.update(self.render(statuses), refresh=True)

    def render(self, statuses: Sequence[StageStatus]) -> Group:
        """Take in one status report and return the view of it (``update`` without drawing)."""
        now = self._clock()
        rows = []
        for s in statuses:
            track = self._stages.get(s.name)
            if track is None:
                track = self._stages[s.name] = _StageTrack(self._started)
            rows.append(track.observe(s, now))
        return _render(self._headline(statuses, rows, now), statuses, rows)

    def _headline(self, statuses: Sequence[StageStatus], rows: list["_Row"], now: float) -> Text:
        elapsed = f"elapsed {_duration(now - self._started)}"
        if self._interrupts:
            # A stopped stage still finishes the items in its threads' hands; only a stage still
            # running (a sink, after the first interrupt) goes on taking what is queued for it.
            in_flight = sum(s.busy for s in statuses)
            queued = sum(s.queue_depth for s in statuses if s.state == "running")
            how = "stopping" if self._interrupts == 1 else "stopping fast"
            return Text(f"{self._title}  {how}: {in_flight} in flight, {queued} queued  {elapsed}", style="yellow")
        # The run's ETA is that of its slowest stage whose total is known (later stages follow it closely).
        etas = [row.eta for s, row in zip(statuses, rows) if s.state == "running" and s.expected is not None]
        eta = _UNKNOWN if not etas or None in etas else _duration(max(e for e in etas if e is not None))
        return Text(f"{self._title}  {elapsed}  ETA {eta}")


@dataclass(frozen=True)
class _Row:
    """What the view works out for one stage from its status and what came before."""

    rate: float | None  # items finished per second, smoothed; None before any time has passed
    eta: float | None  # seconds left for this stage, if its total and a rate are known
    retries: str
    errors: str


class _StageTrack:
    """One stage across status reports: its smoothed rate and its recent retries and errors."""

    def __init__(self, started: float) -> None:
        self._rate = _SmoothedRate()
        self._last_done = 0
        self._last_time = started
        self._retries = _RecentChange(started)
        self._errors = _RecentChange(started)

    def observe(self, s: StageStatus, now: float) -> _Row:
        self._rate.add(s.done - self._last_done, now - self._last_time)
        self._last_done, self._last_time = s.done, now
        rate = self._rate.rate
        eta = None
        if s.expected is not None and rate is not None:
            remaining = max(s.expected - s.done, 0)
            eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
        errors = s.failed + s.lost
        new_errors = self._errors.add(now, errors)
        retries = s.counters.get("http.retries")  # absent for stages that make no HTTP requests
        return _Row(
            rate=rate,
            eta=eta,
            retries="" if retries is None else _with_change(int(retries), self._retries.add(now, int(retries))),
            errors=_with_change(errors, new_errors) if errors else "",
        )


class _SmoothedRate:
    """Items per second, exponentially weighted by age: the last few seconds count most.

    Items and seconds decay alike, so the first reports give a plain average and a
    report that comes late or early weighs by how long it covers.
    """

    def __init__(self) -> None:
        self._items = 0.0
        self._seconds = 0.0

    def add(self, items: int, seconds: float) -> None:
        if seconds <= 0:
            return
        decay = math.exp(-seconds / _RATE_TIME_CONSTANT)
        self._items = self._items * decay + items
        self._seconds = self._seconds * decay + seconds

    @property
    def rate(self) -> float | None:
        return self._items / self._seconds if self._seconds > 0 else None


class _RecentChange:
    """How much a running total (which starts at 0) grew over the last ``RECENT_SECONDS``."""

    def __init__(self, started: float) -> None:
        self._samples: deque[tuple[float, int]] = deque([(started, 0)])

    def add(self, now: float, total: int) -> int:
        self._samples.append((now, total))
        # Keep the newest sample at least RECENT_SECONDS old as the baseline.
        while len(self._samples) > 1 and self._samples[1][0] <= now - RECENT_SECONDS:
            self._samples.popleft()
        return total - self._samples[0][1]


def _with_change(total: int, change: int) -> str:
    return f"{total} (+{change})" if change > 0 else str(total)


def _render(headline: Text, statuses: Sequence[StageStatus], rows: Sequence[_Row]) -> Group:
    """The live table: one row per stage, and an overall bar once the total is known."""
    table = Table(title=headline, title_justify="left", expand=False)
    columns = ("stage", "threads", "in flight", "queue", "done", "%", "items/s", "ETA", "retries", "errors", "progress")
    for column in columns:
        table.add_column(column, justify="left" if column in ("stage", "progress") else "right")
    for s, row in zip(statuses, rows):
        running = s.state == "running"
        queue = queue_text(s)
        table.add_row(
            Text(s.name, style=_STATE_STYLE.get(s.state, "")),
            threads_text(s),
            str(s.busy) if s.busy else "",
            Text(queue, style="bold red" if queue.endswith("full") else ""),
            str(s.done) if s.expected is None else f"{s.done}/{s.expected}",
            "" if s.expected is None else f"{percent(s.done, s.expected)}%",
            "" if not running else _UNKNOWN if row.rate is None else f"{row.rate:,.1f}",
            "" if not running or s.expected is None else _UNKNOWN if row.eta is None else _duration(row.eta),
            row.retries,
            Text(row.errors, style="red") if row.errors else "",
            _bar(s.done, s.expected),
        )
    last = statuses[-1] if statuses else None
    if last is None or last.expected is None:
        return Group(table)
    overall = Table.grid(padding=(0, 1))
    overall.add_row("overall", ProgressBar(total=max(last.expected, 1), completed=last.done, width=40),
                    f"{last.done}/{last.expected} ({percent(last.done, last.expected)}%)")
    return Group(table, overall)


def _duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _bar(done: int, expected: int | None) -> ProgressBar | str:
    if expected is None:
        return ""
    return ProgressBar(total=max(expected, 1), completed=min(done, expected), width=20)


def render_summary(report: RunReport, pipeline: str, show_db: str = "python main.py --show-db") -> Group:
    """The end-of-run summary: per-stage counts and failures by error type, rows written, where
    failures went, and the outcome: green when done, yellow when interrupted or finished with
    failures beyond ``max_failures``, red when a stage died or failures could not be recorded.
    ``show_db`` is the command that shows the rows this pipeline wrote."""
    table = Table(title=f"{pipeline}: finished in {report.seconds:.1f}s", title_justify="left")
    for column in ("stage", "state", "in", "out", "failed", "lost", "seconds", "errors", "other"):
        table.add_column(column, justify="left" if column in ("stage", "state", "errors", "other") else "right")
    for s in report.stages:
        other = ", ".join(f"{name} {count}" for name, count in sorted(s.counters.items())
                          if not name.startswith(_HTTP))  # those have a table of their own
        if s.restarts:
            other = ", ".join(filter(None, [other, f"restarts {s.restarts}"]))
        if s.min_instances is not None:
            pool = f"threads auto {s.min_instances}-{s.max_instances}: {s.instances} -> {s.pool_size} (peak {s.pool_peak})"
            other = ", ".join(filter(None, [other, pool]))
        table.add_row(
            s.name, Text(s.state, style=_STATE_STYLE.get(s.state, "")), str(s.items_in), str(s.items_out),
            str(s.failed), str(s.lost), f"{s.seconds:.1f}", describe_failures(s.errors, 0), other,
        )
    lines: list[Text | Table] = [table]
    stats = _stats_table(report)
    if stats is not None:
        lines.append(stats)
    rows = sum(s.counters.get("rows_written", 0) for s in report.stages)
    if rows:
        lines.append(Text(f"rows written: {rows} (look at them: {show_db})"))
    if report.dead_letters:
        lines.append(Text(f"{report.dead_letters} item(s) failed or were not processed: {report.dead_letter_path}",
                          style="yellow"))
    if report.exit_code == EXIT_OK:
        lines.append(Text(f"{report.reason or 'done'} (exit code 0)", style="green"))
    else:
        style = "yellow" if report.exit_code in (EXIT_INTERRUPTED, EXIT_FAILURES) else "bold red"
        lines.append(Text(f"{report.reason} (exit code {report.exit_code})", style=style))
    return Group(*lines)


_HTTP = "http."
_QUANTILES = ("p50", "p95", "p99")


def _stats_table(report: RunReport) -> Table | None:
    """Per stage: HTTP requests, retries by reason, answers by status code, latency quantiles and the
    peak depth of its input queue; no table for a run that made no request and queued nothing."""
    stages = [s for s in report.stages if "http.requests" in s.stats or s.queue_peak]
    if not stages:
        return None
    table = Table(title="requests and queues", title_justify="left")
    table.add_column("stage")
    for column in ("requests", "retries", "status codes", *_QUANTILES, "peak queue"):
        table.add_column(column, justify="left" if column in ("retries", "status codes") else "right")
    for stage in stages:
        stats = stage.stats
        table.add_row(stage.name, *_http_cells(stats), str(stage.queue_peak))
    return table


def _http_cells(stats: dict[str, Any]) -> list[str]:
    """requests, retries, status codes, p50, p95, p99 of a stage's grouped stats (blank without requests)."""
    if "http.requests" not in stats:
        return [""] * 6
    retries = dict(stats.get("http.retries", {}))
    total = retries.pop("total", sum(retries.values()))
    reasons = ", ".join(f"{reason} {int(n)}" for reason, n in sorted(retries.items()) if n)
    codes = ", ".join(f"{code}: {int(n)}" for code, n in sorted(stats.get("http.status", {}).items()))
    latency = stats.get("http.latency", {})
    return [
        f"{int(stats['http.requests']):,}",
        f"{int(total)} ({reasons})" if reasons else str(int(total)),
        codes,
        *(_milliseconds(latency.get(q)) for q in _QUANTILES),
    ]


def _milliseconds(seconds: float | None) -> str:
    # A quantile is the upper bound of its latency bucket; None is the last, unbounded one.
    if seconds is None:
        return ""
    ms = seconds * 1000
    return f"≤{ms:,.0f} ms" if ms >= 10 else f"≤{ms:.1f} ms"
