"""Slow and faulty network on demand, and the request counters that show what happened.

The fault layer is WSGI middleware in front of the Flask app, so it applies to every
request the same way: rate limit first (429 at once, as real limiters answer), then an
injected 500/503 or the real answer, built halfway through the latency, which leaves once
the latency has passed since the request arrived (slept with no lock held).
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Looked up at call time so tests can replace the clock and the sleep of this module alone.
_now: Callable[[], float] = time.monotonic
_sleep: Callable[[float], None] = time.sleep

# A server whose requests must not block their thread (gevent's) puts its own sleep in the environ here.
SLEEP_KEY = "crypto_server.sleep"


@dataclass(frozen=True)
class Faults:
    """Fault injection settings; all zero/None means a fast, healthy server.

    ``sleep`` seconds of latency on every request, plus up to ``jitter`` seconds more
    (uniform); ``error_rate`` is the fraction of requests answered 500 or 503 (half
    each); ``rate_limit`` admits at most that many requests in any one-second window,
    server-wide, and answers the rest 429 with ``Retry-After`` (None: no limit).
    """

    sleep: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    rate_limit: int | None = None

    def __post_init__(self) -> None:
        for name in ("sleep", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if not isinstance(self.error_rate, (int, float)) or not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, got {self.error_rate!r}")
        if self.rate_limit is not None and (
            isinstance(self.rate_limit, bool) or not isinstance(self.rate_limit, int) or self.rate_limit < 0
        ):
            raise ValueError(f"rate_limit must be an integer >= 0 or None, got {self.rate_limit!r}")


_REQUESTS, _IN_FLIGHT, _PEAK, _ERRORS, _LIMITED = range(5)


class Stats:
    """Request counters, safe to read from any thread; the lock is held only to update them.

    ``requests`` counts every request received (including refused ones), ``in_flight``
    those being handled now and ``peak_in_flight`` the most at once since the last
    ``reset()``; ``errors_injected`` counts injected 500/503 answers and
    ``rate_limited`` the 429 answers.

    With ``shared=True`` the counters live in shared memory behind a process-shared
    lock, so processes forked afterwards (POSIX only) count into the same ones.
    """

    _FIELDS = ("requests", "in_flight", "peak_in_flight", "errors_injected", "rate_limited")

    def __init__(self, shared: bool = False) -> None:
        self._lock: Any
        self._counts: Any  # indexed by _REQUESTS .. _LIMITED
        if shared:
            context = multiprocessing.get_context("fork")
            self._lock = context.Lock()  # a semaphore in shared memory: guards _counts across processes
            self._counts = context.RawArray("q", len(self._FIELDS))
        else:
            self._lock = threading.Lock()  # guards _counts
            self._counts = [0] * len(self._FIELDS)

    @property
    def requests(self) -> int:
        return self._counts[_REQUESTS]

    @property
    def in_flight(self) -> int:
        return self._counts[_IN_FLIGHT]

    @property
    def peak_in_flight(self) -> int:
        return self._counts[_PEAK]

    @property
    def errors_injected(self) -> int:
        return self._counts[_ERRORS]

    @property
    def rate_limited(self) -> int:
        return self._counts[_LIMITED]

    def reset(self) -> None:
        """Zero the counters; ``peak_in_flight`` restarts from the requests in flight now."""
        with self._lock:
            counts = self._counts
            counts[_REQUESTS] = counts[_ERRORS] = counts[_LIMITED] = 0
            counts[_PEAK] = counts[_IN_FLIGHT]

    def snapshot(self) -> dict[str, int]:
        """All counters at one instant."""
        with self._lock:
            return dict(zip(self._FIELDS, self._counts[:]))

    def __repr__(self) -> str:
        return f"Stats({', '.join(f'{k}={v}' for k, v in self.snapshot().items())})"

    def _begin(self) -> None:
        with self._lock:
            counts = self._counts
            counts[_REQUESTS] += 1
            counts[_IN_FLIGHT] += 1
            if counts[_IN_FLIGHT] > counts[_PEAK]:
                counts[_PEAK] = counts[_IN_FLIGHT]

    def _end(self) -> None:
        with self._lock:
            self._counts[_IN_FLIGHT] -= 1

    def _error(self) -> None:
        with self._lock:
            self._counts[_ERRORS] += 1

    def _limit(self) -> None:
        with self._lock:
            self._counts[_LIMITED] += 1


class _RateLimiter:
    """At most ``limit`` admissions in any sliding one-second window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._admitted: deque[float] = deque()

    def admit(self, limit: int) -> int | None:
        """None if admitted, else the whole seconds to wait before retrying (at least 1)."""
        with self._lock:
            now = _now()
            window = self._admitted
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) < limit:
                window.append(now)
                return None
            wait = window[len(window) - limit] + 1.0 - now if limit else 1.0
            return max(1, math.ceil(wait))


class _SharedRateLimiter:
    """:class:`_RateLimiter` for one fixed ``limit``, in shared memory for processes forked afterwards.

    It keeps the times of the last ``limit`` admissions in a ring: a request is admitted
    when the oldest of them is a second old (the same rule as the sliding window).
    time.monotonic is one clock for every process of the machine.
    """

    def __init__(self, limit: int) -> None:
        context = multiprocessing.get_context("fork")
        self.limit = limit
        self._lock = context.Lock()  # a semaphore in shared memory: guards _times and _next across processes
        self._times = context.RawArray("d", [-math.inf] * max(limit, 1))
        self._next = context.RawValue("q", 0)  # the ring slot of the oldest admission

    def admit(self, limit: int) -> int | None:
        """As :meth:`_RateLimiter.admit`; ``limit`` must be the one given at construction."""
        if limit != self.limit:
            raise ValueError(f"this rate limiter is shared for {self.limit} per second, not {limit}")
        if not limit:
            return 1
        with self._lock:
            now = _now()
            oldest = self._times[self._next.value]
            if oldest <= now - 1.0:
                self._times[self._next.value] = now
                self._next.value = (self._next.value + 1) % limit
                return None
            return max(1, math.ceil(oldest + 1.0 - now))


_INJECTED = ((500, "Internal Server Error"), (503, "Service Unavailable"))


class _FaultMiddleware:
    """WSGI middleware that counts requests and applies the current :class:`Faults`."""

    def __init__(self, app: Callable, faults: Faults, seed: int) -> None:
        self._app = app
        self.faults = faults  # replaced whole (never mutated), so readers need no lock
        self.stats = Stats()
        self._limiter: _RateLimiter | _SharedRateLimiter = _RateLimiter()
        self._seed = seed
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._set_lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        faults = self.faults  # one consistent snapshot for this request
        self.stats._begin()
        try:
            if faults.rate_limit is not None:
                retry_after = self._limiter.admit(faults.rate_limit)
                if retry_after is not None:
                    self.stats._limit()
                    return _answer(
                        start_response, 429, "Too Many Requests", "rate limit exceeded", retry_after=retry_after
                    )
            arrived = _now()
            delay, injected = self._draw(faults)
            sleep = environ.get(SLEEP_KEY) or _sleep  # no lock held while sleeping: slow requests overlap freely
            # The answer is built halfway through the latency and leaves once the latency has
            # passed since the request arrived, as a real server's work is part of its latency.
            # Under a burst of thousands the work then overlaps the others' waits instead of
            # piling up after them, and it does not compete with the burst's own arrival (on
            # 2 cores shared with the clients: 5,000 at sleep 1 ended at 1.9 s built at once,
            # 1.4 s built halfway).
            if delay > 0:
                sleep(delay / 2)
            if injected is not None:
                self.stats._error()
                answer = _Held(lambda respond: _answer(respond, *injected, "simulated server fault"))
            else:
                answer = _Held(lambda respond: self._app(environ, respond))
            left = arrived + delay - _now()
            if left > 0:
                sleep(left)
            return answer.send(start_response)
        finally:
            self.stats._end()

    def _draw(self, faults: Faults) -> tuple[float, tuple[int, str] | None]:
        """Latency and the injected error (if any) for one request."""
        delay, injected = faults.sleep, None
        if faults.jitter or faults.error_rate:
            # Only draw what the settings use, so a seed gives the same sequence for them.
            with self._rng_lock:
                if faults.jitter:
                    delay += self._rng.uniform(0.0, faults.jitter)
                if faults.error_rate and self._rng.random() < faults.error_rate:
                    injected = _INJECTED[self._rng.random() < 0.5]
        return delay, injected

    def set_faults(self, **changes: Any) -> Faults:
        """Replace some settings while serving; requests already running keep the old ones."""
        with self._set_lock:  # two callers must not lose each other's changes
            faults = dataclasses.replace(self.faults, **changes)
            if isinstance(self._limiter, _SharedRateLimiter) and faults.rate_limit != self.faults.rate_limit:
                raise ValueError("rate_limit cannot change once the server runs in several processes")
            self.faults = faults
            return self.faults

    def share(self) -> None:
        """Move the counters and the rate limiter to shared memory, before forking more serving processes."""
        self.stats = Stats(shared=True)
        self._limiter = _SharedRateLimiter(self.faults.rate_limit or 0)

    def forked(self, index: int) -> None:
        """In serving process ``index`` (1, 2, ...) after the fork: draw faults of its own."""
        self._rng = random.Random(f"{self._seed}/{index}")


class _Held:
    """A WSGI answer built now and handed to the real ``start_response`` later."""

    def __init__(self, build: Callable[[Callable], Iterable[bytes]]) -> None:
        self._status, self._headers, self._exc_info = "", [], None
        body = build(self._start_response)
        try:
            self._body = b"".join(body)  # the app's answers are small; a stream would defeat the point
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def _start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        self._status, self._headers, self._exc_info = status, headers, exc_info
        return self._refuse_write

    @staticmethod
    def _refuse_write(data: bytes) -> None:
        raise RuntimeError("the price server's answers are returned, never written")

    def send(self, start_response: Callable) -> list[bytes]:
        start_response(self._status, self._headers, self._exc_info)
        return [self._body]


def _answer(
    start_response: Callable, code: int, reason: str, message: str, retry_after: int | None = None
) -> list[bytes]:
    body = json.dumps({"status": code, "error": reason, "message": message}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    start_response(f"{code} {reason}", headers)
    return [body]
