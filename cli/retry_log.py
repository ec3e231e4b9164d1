"""Retries as a compact log line per stage, at most one every ``every`` seconds.

    PriceWorker: 125 retries in the last 10 s (5xx 110, 429 15)

Read from the live status (the ``http.retries`` counters), never from the stages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from engine import StageStatus

log = logging.getLogger("retries")

REASONS = ("connect", "timeout", "5xx", "429")


class RetryLog:
    """A status callback: logs a stage's first retries at once, then its new ones at most once per ``every`` s."""

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._started = clock()
        self._logged: dict[str, tuple[float, dict[str, float]]] = {}  # stage -> (when, counters then)

    def __call__(self, statuses: list[StageStatus]) -> None:
        now = self._clock()
        for s in statuses:
            # A stage's first retries are said at once, so a short run shows them too; then once per period.
            first = s.name not in self._logged
            since, before = self._logged.get(s.name, (self._started, {}))
            retries = s.counters.get("http.retries", 0) - before.get("http.retries", 0)
            if retries <= 0 or (not first and now - since < self._every):
                continue
            reasons = []
            for reason in REASONS:
                key = f"http.retries.{reason}"
                count = s.counters.get(key, 0) - before.get(key, 0)
                if count:
                    reasons.append(f"{reason} {count:g}")
            log.warning("%s: %g retries in the last %.0f s (%s)", s.name, retries, max(now - since, 1), ", ".join(reasons))
            self._logged[s.name] = (now, dict(s.counters))
