"""Price fetcher worker: a symbol (or one ready task) in, checked :class:`PriceRecord` s out.

The engine builds one :class:`PriceWorker` per thread of the fetcher pool, so
each object owns one HTTP session.  The parts it is made of live in their own
modules: ``workers.price_client`` (the server's API), ``workers.price_answers``
(reading its answers) and ``workers.validation`` (what may be stored).
"""

from __future__ import annotations

import datetime as dt
import logging
import reprlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import requests

from workers.price_answers import DEFAULT_DATE_XPATH, DEFAULT_XPATH, compile_xpath, record_from_json, record_from_quote_page
from workers.price_client import PriceDataError, PriceServerClient, parse_day, parse_exchanges
from workers.records import PriceRecord, PriceTask
from workers.validation import InvalidPrice, clean_name

__all__ = [
    "DEFAULT_DATE_XPATH",
    "DEFAULT_XPATH",
    "ExchangesFailed",
    "InvalidPrice",
    "PriceDataError",
    "PriceServerClient",
    "PriceWorker",
]

log = logging.getLogger(__name__)

MODES = ("api", "quote_page")
# What fails one exchange of a symbol without failing the others.
_EXCHANGE_ERRORS = (requests.RequestException, PriceDataError, InvalidPrice)


class ExchangesFailed(PriceDataError):
    """Some exchanges of a symbol item failed; ``failures`` maps exchange -> exception."""

    def __init__(self, symbol: str, failures: dict[str, Exception], total: int) -> None:
        self.failures = failures
        reasons = "; ".join(f"{exchange}: {exc}" for exchange, exc in failures.items())
        super().__init__(f"{symbol}: {len(failures)} of {total} exchange(s) failed: {reasons}")


class PriceWorker:
    """Fetch prices from the price server, one item at a time.

    Parameters (from the pipeline YAML):

    - ``base_url``: the price server; default ``$PRICE_SERVER_URL``, else ``http://127.0.0.1:5000``.
    - ``exchanges``: a list of exchange names, or ``"all"`` (asked from ``/exchanges`` once).
    - ``date``: ``YYYY-MM-DD``, or ``"latest"`` (the server's newest day, asked from ``/days`` once).
    - ``mode``: ``"api"`` (``GET /price/<exchange>/<symbol>/<date>`` per exchange) or
      ``"quote_page"`` (``GET /quote/<symbol>``, price read from the HTML with ``xpath``).
    - ``xpath``: where the price is on the quote page; ``$symbol`` is bound to the
      upper-case symbol.  It may select an element (its visible text is used), a
      string (an attribute or ``text()``) or a number.  Thousands separators are removed.
      The default reads the exact ``value`` attribute of the symbol's ``fin-streamer``.
    - ``date_xpath``: where the quote page says its day; the first ``YYYY-MM-DD`` in that
      text is the record's ``price_date``.  Without one (or with ``None``), today's UTC date.
    - ``http``: keyword arguments for :class:`workers.http.HttpClient` (timeouts, retries...).

    Items:

    - a symbol string: in ``api`` mode one record per configured exchange, for ``date``;
      in ``quote_page`` mode one record with exchange ``"quote"``, the page's day
      (see ``date_xpath``), and only ``close`` known.
    - a task, :class:`PriceTask` or a dict with ``symbol``, ``exchange``, ``date``
      (``date`` may be ``"latest"``): one record.  Only in ``api`` mode.

    Outcomes: a day without a price (JSON ``null``) yields nothing and counts
    ``counters["no_data"]``; each record counts ``counters["prices"]``.  HTTP errors
    (after the client's retries), bad JSON, a price object missing fields or a
    missing page element raise :class:`PriceDataError`; a price that must not be
    stored (see :func:`workers.validation.check_price`: not a number, not finite,
    not positive, over the bound, ``high < low``, a day in the future...) raises
    :class:`InvalidPrice`.  Either fails the item, with the reason and the URL in
    the message; a symbol or exchange that is not a short name fails it before
    any request.

    Partial failure: when a symbol item fans out to several exchanges and some
    fail, the records of the others are yielded first, then :class:`ExchangesFailed`
    is raised naming each failed exchange and why.  The engine therefore passes
    the good records downstream *and* dead-letters the item.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        exchanges: list[str] | Literal["all"] = "all",
        date: str | dt.date = "latest",
        mode: str = "api",
        xpath: str = DEFAULT_XPATH,
        date_xpath: str | None = DEFAULT_DATE_XPATH,
        http: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self._mode = mode
        self._exchanges = parse_exchanges(exchanges)
        self._date = parse_day(date, "date")
        self._xpath = compile_xpath(xpath, "xpath")
        self._date_xpath = None if date_xpath is None else compile_xpath(date_xpath, "date_xpath")
        self._server = PriceServerClient(base_url, http)
        self.counters: Counter[str] = self._server.http.counters  # one Counter: the HTTP stats go with ours

    @classmethod
    def prepare_stage(cls, params: Mapping[str, Any]) -> None:
        """Before the run: check the parameters and, in ``api`` mode, that the server
        answers and knows the configured exchanges (else every item would fail)."""
        worker = cls(**params)
        try:
            if worker._mode == "api":
                worker._server.check(worker._exchanges)
        finally:
            worker.close()

    def process(self, item: str | PriceTask | Mapping[str, Any]) -> Iterator[PriceRecord]:
        """Yield the records of one item; raise when (part of) it failed, see the class docstring."""
        if isinstance(item, str):
            symbol = clean_name(item)
            if self._mode == "quote_page":
                yield self._count(self._fetch_quote(symbol))
            else:
                yield from self._fetch_symbol(symbol)
            return
        task = _to_task(item)
        if self._mode != "api":
            raise ValueError(f"task items need mode 'api' (a quote page has no exchange or day): {reprlib.repr(item)}")
        record = self._fetch_price(task.symbol, task.exchange, self._server.resolve(parse_day(task.date, "date")))
        if record is not None:
            yield self._count(record)

    def close(self) -> None:
        self._server.close()

    def _count(self, record: PriceRecord) -> PriceRecord:
        self.counters["prices"] += 1
        return record

    def _fetch_symbol(self, symbol: str) -> Iterator[PriceRecord]:
        exchanges = self._server.exchanges() if self._exchanges == "all" else self._exchanges
        day = self._server.resolve(self._date)
        failures: dict[str, Exception] = {}
        for exchange in exchanges:
            try:
                record = self._fetch_price(symbol, exchange, day)
            except _EXCHANGE_ERRORS as exc:
                # Keep going: one exchange being down must not lose the others' prices.
                # (The engine logs the item's failure; logging each one here too would flood.)
                log.debug("%s on %s failed: %s", symbol, exchange, exc)
                failures[exchange] = exc
                continue
            if record is not None:
                yield self._count(record)
        if failures:
            raise ExchangesFailed(symbol, failures, len(exchanges))

    def _fetch_price(self, symbol: str, exchange: str, day: dt.date) -> PriceRecord | None:
        url = self._server.url("price", exchange, symbol.lower(), day.isoformat())
        data = self._server.get_json(url)
        if data is None:
            log.debug("no price for %s on %s on %s", symbol, exchange, day)
            self.counters["no_data"] += 1
            return None
        return record_from_json(data, symbol=symbol, exchange=exchange, day=day, url=url)

    def _fetch_quote(self, symbol: str) -> PriceRecord:
        symbol = symbol.upper()  # as finance sites spell their quote URLs
        url = self._server.url("quote", symbol)
        response = self._server.http.get(url)
        return record_from_quote_page(
            response.content, symbol=symbol, url=url, xpath=self._xpath, date_xpath=self._date_xpath
        )


def _to_task(item: Any) -> PriceTask:
    """A :class:`PriceTask` from a task item, checking its fields."""
    if isinstance(item, PriceTask):
        task = item
    elif isinstance(item, Mapping):
        missing = [key for key in ("symbol", "exchange", "date") if key not in item]
        if missing:
            raise ValueError(f"task lacks {', '.join(missing)}: {reprlib.repr(item)}")
        day = item["date"]
        task = PriceTask(item["symbol"], item["exchange"], day.isoformat() if isinstance(day, dt.date) else day)
    else:
        raise TypeError(f"expected a symbol, a PriceTask or a task dict, got {type(item).__name__}: {reprlib.repr(item)}")
    return PriceTask(clean_name(task.symbol, "symbol"), clean_name(task.exchange, "exchange"), task.date)
