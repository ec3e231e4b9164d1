"""What an :class:`workers.http.HttpClient` counts, under the counter names the run report reads.

All counts go into one ``collections.Counter`` per client (one client per
thread, so no lock): a few dict increments per request, with every key built
once at import.

- ``http.requests``: every attempt that reached a server or failed to connect (retries included)
- ``http.status.<code>``: responses by status code (every attempt that got one)
- ``http.retries``: retries in all; ``http.retries.<reason>``: by reason, one of
  ``connect`` (connecting failed or the connection broke), ``timeout`` (no answer in time),
  ``5xx`` and ``429``
- ``http.retry_after_seconds``: seconds slept because a server sent ``Retry-After``
- ``http.bytes``: bytes of response bodies read
- ``overload``: the engine's generic "the far end is overloaded" counter (see
  :mod:`engine.contract`): answers 429 and 503, and attempts that timed out
- ``http.latency.le.<bound>``: requests whose latency (one ``get()``: retries and their
  waits included, body read) was at most ``<bound>`` seconds and more than the bound
  below it (NOT cumulative); bounds double from 1 ms to 65.536 s, then ``+Inf``.
  ``http.latency.sum``: their total seconds. Percentiles computed from these
  buckets are the bucket's upper bound: at most twice the true value.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

import urllib3.exceptions

LATENCY_BOUNDS: tuple[float, ...] = tuple(0.001 * 2**i for i in range(17))  # 0.001 .. 65.536 s
_LATENCY_KEYS = tuple(f"http.latency.le.{b:g}" for b in LATENCY_BOUNDS) + ("http.latency.le.+Inf",)
_STATUS_KEYS = {code: f"http.status.{code}" for code in range(100, 600)}
_OVERLOAD_STATUS = frozenset((429, 503))  # answers that say "slow down": counted in ``overload``


def count_latency(counters: Counter[str], seconds: float) -> None:
    """Count one request that took ``seconds``."""
    counters[_LATENCY_KEYS[bisect_left(LATENCY_BOUNDS, seconds)]] += 1
    counters["http.latency.sum"] += seconds


def count_response(counters: Counter[str], status: int) -> None:
    """Count one attempt that got an answer with ``status``."""
    counters["http.requests"] += 1
    counters[_STATUS_KEYS.get(status) or f"http.status.{status}"] += 1
    if status in _OVERLOAD_STATUS:
        counters["overload"] += 1


def count_retry(counters: Counter[str], status: int | None, error: Exception | None) -> None:
    """Count one retry, after an answer with ``status`` or after ``error``."""
    reason = retry_reason(status, error)
    counters["http.retries"] += 1
    counters[f"http.retries.{reason}"] += 1
    if reason == "timeout":
        counters["overload"] += 1


def retry_reason(status: int | None, error: Exception | None) -> str:
    """``connect``, ``timeout``, ``5xx`` or ``429``: why an attempt is retried."""
    if status is not None:
        return "429" if status == 429 else "5xx"
    if isinstance(error, urllib3.exceptions.TimeoutError) and not isinstance(
        error, urllib3.exceptions.ConnectTimeoutError
    ):
        return "timeout"
    return "connect"
