"""``instances: auto``: adaptive concurrency for a stage's pool of threads.

:class:`ConcurrencyLimit` is the controller, pure and deterministic: it is fed
one :class:`Window` of measurements at a time and returns the pool size to
use next. It follows TCP Vegas and AIMD, as Netflix's concurrency-limits does
for servers:

- *overload* (the workers counted ``overload``: for the HTTP client, answers
  429 or 503 and timeouts) shrinks the pool multiplicatively: by ``BACKOFF``,
  or by half when ``HEAVY_OVERLOAD`` of the window's answers were overload;
- *latency* (the engine's own time per item in ``process()``) above
  ``TOLERANCE`` times the lowest seen recently shrinks it in proportion
  (the gradient: back to where latency was within the tolerance), by at most
  ``LATENCY_SHRINK`` per window;
- otherwise it grows while growing pays: doubling at first (slow start), then
  by a quarter (from when latency passes ``SLOW_START_TOLERANCE`` times the
  lowest), then by an eighth once overload has been seen (pausing
  ``PATIENCE_WINDOWS`` just below the size that was overloaded). A doubling or
  a quarter step that did not raise throughput by at least ``MIN_GAIN`` of what
  it should have is undone (a doubling halfway), and the next try waits a few
  windows longer.
  A pool that is not kept busy (too little input) does not grow.

:class:`StageAutoscaler` applies it to a running :class:`engine.stage.Stage`,
from the monitor thread: it measures windows (at least ``WINDOW_SECONDS`` and
1.5 times the lowest time per item; cut short by a flood of overload signals),
and calls ``Stage.resize``. After a resize the next window starts once the
threads have had time to finish an item at the new size. It stops resizing for
good once the stage is stopped. After every producer of the input queue is done
it goes on: each thread it adds is owed one more pill (see ``Stage.resize``),
so every thread still gets its own.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from engine.stage import Stage

log = logging.getLogger(__name__)

BACKOFF = 0.8  # the pool after an overload signal, as a fraction of what it was
HEAVY_OVERLOAD = 0.1  # when at least this share of a window's answers are overload signals, the pool is halved
TOLERANCE = 1.3  # latency may grow to this multiple of the lowest recent latency before the pool shrinks
LATENCY_SHRINK = 0.75  # the most one window of high latency shrinks the pool (a CPU-bound client's latency is noisy)
MIN_GAIN = 0.2  # a step must bring at least this fraction of its proportional throughput gain
MIN_BUSY = 0.5  # the pool grows only while at least this fraction of it is busy on average
WINDOW_SECONDS = 0.3  # the shortest measuring window
SLOW_START_TOLERANCE = 1.15  # slow start (doubling) ends once latency passes this multiple of the lowest
FLOOD = 0.25  # overload signals from this share of the pool end a window at once (else it runs its time)
BASELINE_WINDOWS = 20  # the lowest latency is that of the last this many windows
PATIENCE_WINDOWS = 4  # windows to wait before trying again a step that did not pay (doubled each time, to 32)


@dataclass(frozen=True)
class Window:
    """What a stage did over one measuring window."""

    seconds: float  # how long the window lasted
    items: int  # items finished in it
    busy_seconds: float  # time spent in process() on them, all threads together
    overload: int  # overload signals the workers counted in it

    @property
    def latency(self) -> float:
        """Seconds per item."""
        return self.busy_seconds / self.items

    @property
    def throughput(self) -> float:
        """Items per second."""
        return self.items / self.seconds


class ConcurrencyLimit:
    """The pool size of one stage, between ``minimum`` and ``maximum``, updated once per :class:`Window`."""

    def __init__(self, start: int, minimum: int, maximum: int) -> None:
        if not 1 <= minimum <= start <= maximum:
            raise ValueError(f"need 1 <= minimum <= start <= maximum, got {minimum}, {start}, {maximum}")
        self.limit = start
        self.minimum, self.maximum = minimum, maximum
        self.reason = "start"  # why the limit is what it is: for the log
        self._latencies: deque[float] = deque(maxlen=BASELINE_WINDOWS)
        self._slow_start = True
        self._congested = False  # overload has been seen: grow by an eighth, and pause below the ceiling
        self._ceiling = maximum  # the size at the last overload signal
        self._waited = False  # the pause below the ceiling is over
        self._backed_off = False  # the last window had overload signals
        self._step_from: tuple[int, float] | None = None  # (limit, throughput) before the last growth
        self._patience = PATIENCE_WINDOWS
        self._wait = 0  # windows left before growing again

    @property
    def baseline(self) -> float | None:
        """The lowest latency of the recent windows (seconds per item), None before any."""
        return min(self._latencies) if self._latencies else None

    def update(self, window: Window) -> int:
        """Take in one window measured at the current limit; return the limit to use next."""
        if window.items <= 0 or window.seconds <= 0:
            return self.limit  # nothing finished: nothing learned
        latency, throughput = window.latency, window.throughput
        self._latencies.append(latency)
        baseline = min(self._latencies)
        step_from, self._step_from = self._step_from, None
        backed_off, self._backed_off = self._backed_off, False
        if window.overload > 0:
            self._slow_start, self._congested, self._ceiling, self._backed_off = False, True, self.limit, True
            # Far over (a tenth or more of the answers say so): halve, as TCP does on loss; else back off gently.
            heavy = window.overload >= HEAVY_OVERLOAD * (window.items + window.overload)
            return self._set(int(self.limit * (0.5 if heavy else BACKOFF)), f"{window.overload} overload signal(s)")
        if latency > TOLERANCE * baseline:
            if backed_off:
                # The refused requests' waits (Retry-After) are in this latency: already acted on.
                return self.limit
            if step_from is not None:
                self._back_off_growth()
            self._slow_start = False
            gradient = max(LATENCY_SHRINK, TOLERANCE * baseline / latency)
            return self._set(round(self.limit * gradient), f"latency {latency:.3g}s over {TOLERANCE:g}x {baseline:.3g}s")
        if step_from is not None:
            before, before_throughput = step_from
            wanted = before_throughput * (1 + MIN_GAIN * (self.limit - before) / before)
            if throughput < wanted:
                # After a doubling the best size is likely between the two: go halfway back. After a
                # smaller step, all the way (halfway would ratchet the pool up a little every time).
                back = (before + self.limit) // 2 if self._slow_start else before
                self._back_off_growth()
                return self._set(back, f"growing to {self.limit} did not raise throughput")
            self._patience = PATIENCE_WINDOWS
        if self._wait > 0:
            self._wait -= 1
            return self.limit
        if window.busy_seconds / window.seconds < MIN_BUSY * self.limit or self.limit >= self.maximum:
            return self.limit  # idle threads (too little input), or as large as allowed
        if self._slow_start and latency > SLOW_START_TOLERANCE * baseline:
            self._slow_start = False  # latency starts to tell: from here, smaller steps
        if self._slow_start:
            grown = self.limit * 2
        elif self._congested:
            grown = self.limit + max(1, self.limit // 8)
            if grown >= self._ceiling and not self._waited:
                # The size that was overloaded last time: stay just below it a while before trying it again.
                self._wait, self._waited = PATIENCE_WINDOWS, True
                return self.limit
            if self._waited:  # trying the ceiling now: past it, the pool grows as before
                self._ceiling, self._waited = self.maximum, False
        else:
            grown = self.limit + max(1, self.limit // 4)
        before = self.limit
        self._set(grown, "throughput rises, latency holds")
        if self.limit > before and not self._congested:
            # Checked next window. Small additive steps are not: their gain is within the noise,
            # and overload signals, not throughput, end them.
            self._step_from = (before, throughput)
        return self.limit

    def _back_off_growth(self) -> None:
        # The last step did not pay: wait before the next one, longer each time in a row.
        self._slow_start = False
        self._wait, self._patience = self._patience, min(self._patience * 2, 8 * PATIENCE_WINDOWS)

    def _set(self, limit: int, reason: str) -> int:
        self.limit = max(self.minimum, min(self.maximum, limit))
        self.reason = reason
        return self.limit


class StageAutoscaler:
    """Resizes one auto stage from the monitor thread; :meth:`tick` is called on every monitor tick."""

    def __init__(self, stage: Stage, clock: Callable[[], float] = time.monotonic) -> None:
        auto = stage.config.auto
        assert auto is not None
        self.stage = stage
        self.limit = ConcurrencyLimit(stage.config.instances, auto.min_instances, auto.max_instances)
        self.frozen = False
        self._clock = clock
        self._start: tuple[float, int, float, float] | None = None  # time, done, busy seconds, overload
        self._settle_until = 0.0  # after a resize, the window starts once new threads have finished an item
        self._overload_mark: float | None = None  # the overload count at the last resize: what the next window adds to

    def tick(self) -> None:
        """Measure, and resize the stage when a window is complete; stop for good once the stage is stopped."""
        if self.frozen:
            return
        stage = self.stage
        if stage.stop_event.is_set() or stage.finished:
            self.frozen = True  # a stopped stage takes no new items: nothing to size
            return
        now = self._clock()
        if now < self._settle_until:
            return
        done, busy, overload = stage.work_done()
        if self._start is None:
            # Overload signals that came while the pool settled belong to the next window.
            mark = overload if self._overload_mark is None else self._overload_mark
            self._start = (now, done, busy, mark)
            return
        started, done_before, busy_before, overload_before = self._start
        # A window ends after its time, or at once on a flood of overload signals: a server that says
        # "slow down" to many threads is heard now.
        flood = overload - overload_before >= max(1.0, FLOOD * self.limit.limit)
        if (now - started < self._window_seconds() and not flood) or done == done_before:
            return  # the window goes on (nothing finished yet: nothing to learn from it)
        window = Window(now - started, done - done_before, busy - busy_before, int(overload - overload_before))
        before = self.limit.limit
        after = self.limit.update(window)
        if after != before:
            log.info(
                "%s: %d -> %d threads (%s; %.1f items/s, %.3gs per item)",
                stage.name, before, after, self.limit.reason, window.throughput, window.latency,
            )
            stage.resize(after)
            # After growth, overload signals that come while it settles are the new size's; after a
            # shrink they are the old size's (retries of requests refused before): not held against the new one.
            self._overload_mark = overload if after > before else None
            self._start, self._settle_until = None, now + window.latency
        else:
            self._start = (now, done, busy, overload)

    def _window_seconds(self) -> float:
        # Long enough for each thread to finish an item or two, so every window sees the new size.
        baseline = self.limit.baseline
        return max(WINDOW_SECONDS, 1.5 * baseline) if baseline is not None else WINDOW_SECONDS
