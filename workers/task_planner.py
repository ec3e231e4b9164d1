"""Task planner worker: a symbol in, one :class:`PriceTask` per (exchange, day) out.

For history jobs: put it before a pool of ``PriceWorker`` threads so each
fetcher thread gets single (symbol, exchange, day) tasks from the shared queue
instead of one thread owning a whole symbol's history.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from workers.price_client import PriceServerClient, parse_day, parse_exchanges
from workers.records import PriceTask
from workers.validation import clean_name

__all__ = ["TaskPlanner"]

log = logging.getLogger(__name__)


class TaskPlanner:
    """Expand each symbol item into price tasks over exchanges and a range of days.

    Parameters (from the pipeline YAML):

    - ``exchanges``: a list of exchange names, or ``"all"`` (asked from the server's
      ``/exchanges`` once per object).
    - ``start``, ``end``: the first and last day, inclusive, ``YYYY-MM-DD``; ``end``
      may be ``"latest"`` (the server's newest day, asked from ``/days`` once).
    - ``step_days``: days between two tasks (default 1: every day).
    - ``base_url``, ``http``: the price server and ``HttpClient`` arguments, used only
      for ``exchanges: all`` and ``end: latest``.

    Each symbol yields ``len(exchanges) * len(days)`` tasks, lazily, each counted in
    ``counters["tasks"]``.  The symbol is passed on stripped but not re-cased.
    """

    def __init__(
        self,
        *,
        start: str | dt.date,
        end: str | dt.date = "latest",
        exchanges: list[str] | Literal["all"] = "all",
        step_days: int = 1,
        base_url: str | None = None,
        http: Mapping[str, Any] | None = None,
    ) -> None:
        self._exchanges = parse_exchanges(exchanges)
        self._start: dt.date = parse_day(start, "start", allow_latest=False)  # type: ignore[assignment]
        self._end = parse_day(end, "end")
        if isinstance(step_days, bool) or not isinstance(step_days, int) or step_days < 1:
            raise ValueError(f"step_days must be a whole number of days >= 1, not {step_days!r}")
        self._step = dt.timedelta(days=step_days)
        if self._end != "latest" and self._end < self._start:
            raise ValueError(f"end {self._end} is before start {self._start}")
        self._server = PriceServerClient(base_url, http)
        self.counters: Counter[str] = self._server.http.counters  # one Counter: the HTTP stats go with ours

    @classmethod
    def prepare_stage(cls, params: Mapping[str, Any]) -> None:
        """Before the run: check the parameters, that the server answers and knows the
        exchanges, and that ``end: latest`` is not before ``start``."""
        planner = cls(**params)
        try:
            planner._server.check(planner._exchanges)
            planner._last_day()
        finally:
            planner.close()

    def process(self, item: str) -> Iterator[PriceTask]:
        """Yield the tasks of one symbol (see the class docstring for the order)."""
        symbol = clean_name(item)
        exchanges = self._server.exchanges() if self._exchanges == "all" else self._exchanges
        end = self._last_day()
        # Date-major, exchanges innermost: consecutive tasks hit different
        # (exchange, symbol) keys, so the fetcher threads taking them at the same
        # time spread over the exchanges (and their rate limits) instead of all
        # hammering one exchange, and every exchange advances through the range
        # at the same pace.
        day = self._start
        while day <= end:
            for exchange in exchanges:
                self.counters["tasks"] += 1
                yield PriceTask(symbol, exchange, day.isoformat())
            day += self._step

    def _last_day(self) -> dt.date:
        end = self._server.resolve(self._end)
        if end < self._start:
            raise ValueError(f"the server's latest day {end} is before start {self._start}")
        return end

    def close(self) -> None:
        self._server.close()
