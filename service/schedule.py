"""``--every``: run again and again at fixed times, never two runs at once, without drift."""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_POLL = 0.2  # seconds between looks at the stop flag while waiting: how soon an idle service stops


def parse_every(text: str) -> float:
    """Seconds in ``"30s"``, ``"15m"``, ``"1h"``, ``"1d"`` (a number and one unit); ValueError says what is accepted."""
    match = _EVERY.match(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if not match or seconds <= 0:
        raise ValueError(f"{text!r} is not a duration: give a number and a unit, e.g. 30s, 15m, 1h or 1d")
    return seconds


def describe_seconds(seconds: float) -> str:
    """``"1h 2m"``, ``"15m"``, ``"2.5s"``: a duration for a log line."""
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if v]
    return " ".join(parts[:2])


class Scheduler:
    """Calls ``run_once`` at ``start + k * every`` (k = 0, 1, 2...), on the monotonic clock.

    A run starts only after the last one has returned, so runs never overlap. A run that
    lasts past one or more start times skips them (one log line says so) and the next
    starts at the first start time still ahead: the schedule stays anchored to the first
    start, whatever the runs take. ``run_once`` returns the run's exit code; whatever it
    is, the schedule goes on. ``on_wait`` hears when the next run starts, each time the
schedule waits for one. :meth:`stop` (safe in a signal handler) ends the schedule:
    at once while waiting, after the run in progress otherwise.
    """

    def __init__(self, every: float, run_once: Callable[[], int], *,
                 on_wait: Callable[[dt.datetime], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if every <= 0:
            raise ValueError("every must be more than 0 seconds")
        self.every = every
        self._run_once = run_once
        self._on_wait = on_wait
        self._clock = clock
        self._stopping = False  # a plain flag: set from a signal handler, read by the loop
        self.runs = 0
        self.skipped = 0  # start times missed because a run lasted past them

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Start no more runs (safe to call from a signal handler)."""
        self._stopping = True

    def run(self) -> int | None:
        """Run until :meth:`stop`; return the last run's exit code (None if no run started)."""
        start = self._clock()
        slot = 0
        code = None
        while self._wait_until(start + slot * self.every):
            code = self._run_once()
            self.runs += 1
            ended = self._clock()
            following = max(slot + 1, math.ceil((ended - start) / self.every))
            missed = following - slot - 1
            if missed:
                self.skipped += missed
                log.warning("the run took %s, longer than --every %s: %d start time(s) skipped",
                            describe_seconds(ended - (start + slot * self.every)), describe_seconds(self.every),
                            missed)
            slot = following
        return code

    def _wait_until(self, when: float) -> bool:
        """Wait for ``when`` (monotonic); False if stopped first."""
        if self._stopping:
            return False
        delay = when - self._clock()
        if delay > 0:
            at = dt.datetime.now().astimezone() + dt.timedelta(seconds=delay)
            log.info("next run at %s (in %s)", at.strftime("%H:%M:%S"), describe_seconds(delay))
            if self._on_wait is not None:
                self._on_wait(at)
        while not self._stopping:
            delay = when - self._clock()
            if delay <= 0:
                return True
            time.sleep(min(delay, _POLL))
        return False
