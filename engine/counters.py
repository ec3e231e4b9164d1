"""Turn flat worker counters into the grouped stats of the run report.

The engine knows no counter by name; it reads two conventions of dotted names:

- ``<name>.le.<bound>`` are histogram buckets (not cumulative: each counts the
  events above the next lower bound, up to ``<bound>``; the last is ``+Inf``),
  with ``<name>.sum`` their total. They become ``<name>``: ``{count, sum, p50, p95, p99}``,
  each percentile the upper bound of the bucket it falls in (``None`` in ``+Inf``).
- ``<a>.<b>.<c>`` groups under ``<a>.<b>`` as a map ``{<c>: n}``; a counter named
  ``<a>.<b>`` itself then becomes that map's ``total``.

Other dotted names (``<a>.<b>``) stay as they are; names without a dot are the
worker's own counters and are left to ``counters``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

PERCENTILES = (50, 95, 99)


def summarize(counters: Mapping[str, float]) -> dict[str, Any]:
    """The grouped stats of ``counters`` (see the module docstring), sorted by name."""
    buckets: dict[str, dict[float, float]] = {}
    for key, value in counters.items():
        name, sep, bound = key.partition(".le.")
        if sep and "." in name:
            buckets.setdefault(name, {})[_bound(bound)] = value
    result: dict[str, Any] = {name: histogram(b, counters.get(f"{name}.sum", 0.0)) for name, b in buckets.items()}
    groups = {key.rsplit(".", 1)[0] for key in counters if key.count(".") >= 2}
    for key, value in counters.items():
        if key.count(".") == 0 or key.partition(".le.")[0] in buckets or key.endswith(".sum") and key[:-4] in buckets:
            continue
        parts = key.split(".")
        if len(parts) >= 3:
            result.setdefault(".".join(parts[:2]), {})[".".join(parts[2:])] = value
        elif key in groups:
            result.setdefault(key, {})["total"] = value
        else:
            result[key] = value
    return dict(sorted(result.items()))


def histogram(buckets: Mapping[float, float], total: float = 0.0) -> dict[str, Any]:
    """``{count, sum, p50, p95, p99}`` of non-cumulative ``buckets`` (upper bound -> count)."""
    count = sum(buckets.values())
    result: dict[str, Any] = {"count": count, "sum": round(total, 6)}
    for p in PERCENTILES:
        result[f"p{p}"] = percentile(buckets, p)
    return result


def percentile(buckets: Mapping[float, float], p: float) -> float | None:
    """The upper bound of the bucket holding the ``p``-th percentile; None if no events or it is ``+Inf``."""
    count = sum(buckets.values())
    if not count:
        return None
    rank, seen = math.ceil(count * p / 100), 0.0
    for bound in sorted(buckets):
        seen += buckets[bound]
        if seen >= rank:
            return None if math.isinf(bound) else bound
    return None


def add(totals: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The key-by-key sum of several counter mappings."""
    result: dict[str, float] = {}
    for counters in totals:
        for key, value in counters.items():
            result[key] = result.get(key, 0) + value
    return result


def _bound(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf
