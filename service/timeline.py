"""Each run's timeline: every stage's threads, queue depth and throughput over time, in ``timeline.jsonl``.

One JSON line per sample, in the run's directory::

    {"t": 1.5, "at": 1767225600.5, "stages": {"PriceWorker": {"threads": 8, "queue_depth": 12,
     "queue_maxsize": 50, "done": 340, "rate": 61.2, "failed": 0, "retries": 3}, ...}}

``t`` is seconds since the first sample, ``at`` the wall-clock time (Unix seconds), ``done`` the
items a stage has finished with, ``rate`` the items it took per second over the monitor's last
interval. The file stays small however long a run lasts: a sample is kept only when at least
``t / 1000`` seconds have passed since the last one kept (every status for the first ~17 minutes
at a 1 s monitor_interval; about 12,000 lines for a day-long run).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import StageStatus

log = logging.getLogger(__name__)

TIMELINE_NAME = "timeline.jsonl"
_THINNING = 1000  # a sample is kept once t / _THINNING seconds have passed since the last one kept


class TimelineRecorder:
    """A status callback (``on_status``) that appends one line per kept status to ``<run dir>/timeline.jsonl``.

    ``path_of_run`` gives the run's directory, or None before the run has made it (nothing is
    recorded then). Use one recorder per run. A write that fails (disk full) is logged once and
    recording stops: the timeline never fails a run.
    """

    def __init__(self, path_of_run: Callable[[], Path | None]) -> None:
        self._path_of_run = path_of_run
        self._origin: float | None = None  # monotonic time of the first sample
        self._last = float("-inf")  # t of the last sample kept
        self._broken = False

    def __call__(self, statuses: list[StageStatus]) -> None:
        if self._broken:
            return
        run_path = self._path_of_run()
        if run_path is None:
            return
        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        t = now - self._origin
        if t - self._last < t / _THINNING:
            return
        line = json.dumps({"t": round(t, 3), "at": round(time.time(), 3), "stages": sample(statuses)})
        path = Path(run_path) / TIMELINE_NAME
        try:
            with path.open("a", encoding="utf-8") as file:  # one line at a time: a crash leaves whole lines
                file.write(line + "\n")
        except OSError as exc:
            self._broken = True
            log.warning("cannot write the run timeline %s: %s; the run goes on without it", path,
                        exc.strerror or exc)
            return
        self._last = t


def sample(statuses: list[StageStatus]) -> dict[str, dict[str, Any]]:
    """The figures of one timeline sample, by stage name."""
    return {
        s.name: {
            "threads": s.alive,
            "queue_depth": s.queue_depth,
            "queue_maxsize": s.queue_maxsize,
            "done": s.done,
            "rate": round(s.rate, 3),
            "failed": s.failed + s.lost,
            "retries": int(s.counters.get("http.retries", 0)),
        }
        for s in statuses
    }


def read_timeline(run_path: Path) -> list[dict[str, Any]]:
    """The samples of a run's ``timeline.jsonl``, oldest first; ``[]`` if it has none.

    Never raises: a line that is not a sample (the half-written last line of a killed run) is skipped.
    """
    try:
        text = (Path(run_path) / TIMELINE_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    samples = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("t"), (int, float)) and isinstance(data.get("stages"), dict):
            samples.append(data)
    return samples
