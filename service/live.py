"""The service's state right now, for the dashboard's live view: running, waiting or stopped."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import StageStatus

RUNNING, WAITING, STOPPED = "running", "waiting", "stopped"


class LiveRun:
    """What the service is doing, fed by the scheduler (or a single run) and read by the dashboard.

    Thread-safe: any thread may call any method. :meth:`update` is a status callback (``on_status``).
    """

    def __init__(self, pipeline: str = "") -> None:
        self._lock = threading.Lock()  # guards every field below: one writer thread, many reader threads
        self._state = STOPPED
        self._pipeline = pipeline
        self._path_of_run: Callable[[], Path | None] = lambda: None
        self._started: dt.datetime | None = None
        self._next_run: dt.datetime | None = None
        self._statuses: list[StageStatus] = []

    def begin(self, pipeline: str, path_of_run: Callable[[], Path | None]) -> None:
        """A run starts now; ``path_of_run`` gives its directory once it has one."""
        with self._lock:
            self._state, self._pipeline, self._path_of_run = RUNNING, pipeline, path_of_run
            self._started, self._next_run, self._statuses = _now(), None, []

    def update(self, statuses: list[StageStatus]) -> None:
        """The latest status of every stage of the run in progress."""
        with self._lock:
            self._statuses = list(statuses)

    def wait(self, next_run: dt.datetime | None) -> None:
        """No run is in progress; the next starts at ``next_run`` (None: none is planned)."""
        with self._lock:
            self._state, self._next_run = WAITING, next_run

    def stop(self) -> None:
        """The service has stopped: no run is in progress and none will start."""
        with self._lock:
            self._state, self._next_run = STOPPED, None

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: ``{"state", "run", "pipeline", "started", "next_run", "stages"}``.

        ``run`` is the directory name of the run in progress or last run (None before one has made
        it); ``started`` and ``next_run`` are ISO 8601 times or None; ``stages`` holds each stage's
        latest :class:`engine.StageStatus` as a dict plus ``done`` (the last run's, while waiting).
        """
        with self._lock:
            state, pipeline, path_of_run = self._state, self._pipeline, self._path_of_run
            started, next_run, statuses = self._started, self._next_run, self._statuses
        run_path = path_of_run()
        return {
            "state": state,
            "run": run_path.name if run_path is not None else None,
            "pipeline": pipeline,
            "started": started.isoformat() if started else None,
            "next_run": next_run.isoformat() if next_run else None,
            "stages": [{**dataclasses.asdict(s), "done": s.done} for s in statuses],
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
