"""Price fetcher worker: a symbol (or one ready task) in, :class:`PriceRecord` s out.

The engine builds one :class:`PriceWorker` per thread of the fetcher pool, so
each object owns one HTTP session (see ``workers.http``).  The small
:class:`PriceServerClient` is shared with ``workers.task_planner``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

import lxml.etree
import lxml.html
import requests

from workers.http import HttpClient
from workers.records import PriceRecord, PriceTask

__all__ = [
    "DEFAULT_DATE_XPATH",
    "DEFAULT_XPATH",
    "ExchangesFailed",
    "PriceDataError",
    "PriceServerClient",
    "PriceWorker",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:5000"
# The quote page marks its live price with this element; ``$symbol`` is bound to
# the upper-case symbol so the header quoting other coins cannot match.  Its
# ``value`` attribute is exact where the visible text is rounded to 2 decimals.
DEFAULT_XPATH = '//fin-streamer[@data-symbol=$symbol][@data-field="regularMarketPrice"]/@value'
# Where the quote page says which day its price is for ("As of 2020-04-30 23:59 UTC").
DEFAULT_DATE_XPATH = '//*[@id="quote-market-notice"]'
MODES = ("api", "quote_page")
_PRICE_FIELDS = ("open", "high", "low", "close", "volume")
_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DAY_IN_TEXT_RE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")

Day = dt.date | Literal["latest"]


class PriceDataError(Exception):
    """The server answered 2xx but the body is not a usable price (the message says why and where)."""


class ExchangesFailed(PriceDataError):
    """Some exchanges of a symbol item failed; ``failures`` maps exchange -> exception."""

    def __init__(self, symbol: str, failures: dict[str, Exception], total: int) -> None:
        self.failures = failures
        reasons = "; ".join(f"{exchange}: {exc}" for exchange, exc in failures.items())
        super().__init__(f"{symbol}: {len(failures)} of {total} exchange(s) failed: {reasons}")


def parse_exchanges(value: Any) -> list[str] | Literal["all"]:
    """Check an ``exchanges`` parameter: ``"all"`` or a non-empty list of names."""
    if value == "all":
        return "all"
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"exchanges must be 'all' or a list of exchange names, not {value!r}")
    if not value:
        raise ValueError("exchanges is an empty list; give at least one exchange or 'all'")
    if not all(isinstance(name, str) and name.strip() for name in value):
        raise ValueError(f"exchanges must be non-empty strings: {value!r}")
    return [name.strip() for name in value]


def parse_day(value: Any, name: str, *, allow_latest: bool = True) -> Day:
    """Check a day parameter: ``YYYY-MM-DD`` (or a ``date``, as YAML loads it), or ``"latest"``."""
    if allow_latest and value == "latest":
        return "latest"
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _DAY_RE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass  # e.g. 2020-02-30: reported below like any other bad date
    expected = "YYYY-MM-DD or 'latest'" if allow_latest else "YYYY-MM-DD"
    raise ValueError(f"{name} must be {expected}, not {value!r}")


class PriceServerClient:
    """The price server's endpoints over one :class:`HttpClient`, for one thread.

    ``base_url`` defaults to ``$PRICE_SERVER_URL``, else ``http://127.0.0.1:5000``;
    ``http`` holds keyword arguments for ``HttpClient``.  The exchange list and
    the newest day are asked once and remembered (only once they succeed).
    """

    def __init__(self, base_url: str | None = None, http: Mapping[str, Any] | None = None) -> None:
        self.base_url = (base_url or os.environ.get("PRICE_SERVER_URL") or DEFAULT_BASE_URL).rstrip("/")
        if http is not None and not isinstance(http, Mapping):
            raise ValueError(f"http must be a mapping of HttpClient arguments, not {http!r}")
        # One object serves one thread, so one pooled connection is all it ever uses.
        options = {"pool_size": 1, **(http or {})}
        try:
            self.http = HttpClient(**options)
        except TypeError as exc:
            raise ValueError(f"bad http parameters {dict(http or {})!r}: {exc}") from exc
        self._exchanges: list[str] | None = None
        self._latest: dt.date | None = None

    def url(self, *parts: str) -> str:
        """The URL of ``/part/part...``; each part is escaped so a symbol cannot change the path."""
        return "/".join([self.base_url, *(quote(part, safe="") for part in parts)])

    def get_json(self, url: str) -> Any:
        """GET ``url`` and decode its JSON; raise ``PriceDataError`` if it is not JSON."""
        response = self.http.get(url)
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            raise PriceDataError(f"bad JSON from {url}: {exc}") from exc

    def exchanges(self) -> list[str]:
        """All exchanges the server knows (``GET /exchanges``)."""
        if self._exchanges is None:
            url = self.url("exchanges")
            data = self.get_json(url)
            if not isinstance(data, list) or not data or not all(isinstance(x, str) and x for x in data):
                raise PriceDataError(f"expected a non-empty list of exchange names from {url}, got {data!r:.200}")
            self._exchanges = data
        return self._exchanges

    def latest_day(self) -> dt.date:
        """The newest day the server has prices for (``last`` of ``GET /days``)."""
        if self._latest is None:
            url = self.url("days")
            data = self.get_json(url)
            last = data.get("last") if isinstance(data, dict) else None
            try:
                self._latest = parse_day(last, "last", allow_latest=False)  # type: ignore[assignment]
            except ValueError as exc:
                raise PriceDataError(f"no usable 'last' day from {url}: {data!r:.200}") from exc
        return self._latest  # type: ignore[return-value]

    def check(self, exchanges: list[str] | Literal["all"]) -> None:
        """Raise one clear sentence unless the server answers and knows every named exchange."""
        try:
            known = self.exchanges()
        except (requests.RequestException, PriceDataError) as exc:
            raise RuntimeError(f"the price server at {self.base_url} cannot be used: {exc}") from exc
        unknown = [] if exchanges == "all" else [name for name in exchanges if name not in known]
        if unknown:
            raise ValueError(f"unknown exchange(s) {', '.join(unknown)}; the server has {', '.join(known)}")

    def resolve(self, day: Day) -> dt.date:
        """``day`` itself, or the newest day when it is ``"latest"``."""
        return self.latest_day() if day == "latest" else day  # type: ignore[return-value]

    def close(self) -> None:
        self.http.close()


def clean_symbol(value: Any) -> str:
    """A symbol item stripped of spaces; raise ``ValueError`` if it is not a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a symbol (a non-empty string), got {value!r}")
    return value.strip()


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
    (after the client's retries), bad JSON, a price object missing fields, a
    non-numeric price or a missing page element raise, failing the item, with
    the reason and the URL in the message.

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
        self._xpath = _compile_xpath(xpath, "xpath")
        self._date_xpath = None if date_xpath is None else _compile_xpath(date_xpath, "date_xpath")
        self._server = PriceServerClient(base_url, http)
        self.counters: Counter[str] = Counter()

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
            symbol = clean_symbol(item)
            if self._mode == "quote_page":
                yield self._count(self._fetch_quote(symbol))
            else:
                yield from self._fetch_symbol(symbol)
            return
        task = _to_task(item)
        if self._mode != "api":
            raise ValueError(f"task items need mode 'api' (a quote page has no exchange or day): {item!r}")
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
            except (requests.RequestException, PriceDataError) as exc:
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
        if not isinstance(data, dict):
            raise PriceDataError(f"expected a price object from {url}, got {data!r:.200}")
        missing = [field for field in _PRICE_FIELDS if field not in data]
        if missing:
            raise PriceDataError(f"price object from {url} lacks {', '.join(missing)}")
        values = {field: _json_number(data[field], field, url) for field in _PRICE_FIELDS}
        return PriceRecord(
            symbol=symbol.upper(),
            exchange=exchange,
            price_date=day,
            extracted_time=dt.datetime.now(dt.timezone.utc),
            **values,
        )

    def _fetch_quote(self, symbol: str) -> PriceRecord:
        symbol = symbol.upper()  # as finance sites spell their quote URLs
        url = self._server.url("quote", symbol)
        response = self._server.http.get(url)
        try:
            document = lxml.html.fromstring(response.content)
        except (lxml.etree.ParserError, ValueError) as exc:
            raise PriceDataError(f"unreadable HTML from {url}: {exc}") from exc
        close = _page_number(_evaluate(self._xpath, document, symbol, url), self._xpath.path, url)
        now = dt.datetime.now(dt.timezone.utc)
        return PriceRecord(
            symbol=symbol,
            exchange="quote",
            price_date=self._page_day(document, symbol, url) or now.date(),
            open=None,
            high=None,
            low=None,
            close=close,
            volume=None,
            extracted_time=now,
        )

    def _page_day(self, document: lxml.html.HtmlElement, symbol: str, url: str) -> dt.date | None:
        """The first valid ``YYYY-MM-DD`` in the ``date_xpath`` text, if any."""
        if self._date_xpath is None:
            return None
        found = _evaluate(self._date_xpath, document, symbol, url)
        texts = found if isinstance(found, list) else [found]
        for text in texts:
            text = "".join(text.itertext()) if isinstance(text, lxml.etree._Element) else str(text)
            for day in _DAY_IN_TEXT_RE.findall(text):
                try:
                    return dt.date.fromisoformat(day)
                except ValueError:
                    continue
        return None


def _to_task(item: Any) -> PriceTask:
    """A :class:`PriceTask` from a task item, checking its fields."""
    if isinstance(item, PriceTask):
        task = item
    elif isinstance(item, Mapping):
        missing = [key for key in ("symbol", "exchange", "date") if key not in item]
        if missing:
            raise ValueError(f"task lacks {', '.join(missing)}: {item!r}")
        day = item["date"]
        task = PriceTask(item["symbol"], item["exchange"], day.isoformat() if isinstance(day, dt.date) else day)
    else:
        raise TypeError(f"expected a symbol, a PriceTask or a task dict, got {type(item).__name__}: {item!r}")
    if not isinstance(task.exchange, str) or not task.exchange.strip():
        raise ValueError(f"task has no exchange: {item!r}")
    return PriceTask(clean_symbol(task.symbol), task.exchange.strip(), task.date)


def _compile_xpath(expression: str, name: str) -> lxml.etree.XPath:
    try:
        return lxml.etree.XPath(expression)
    except (lxml.etree.XPathSyntaxError, TypeError) as exc:
        raise ValueError(f"bad {name} {expression!r}: {exc}") from exc


def _evaluate(xpath: lxml.etree.XPath, document: lxml.html.HtmlElement, symbol: str, url: str) -> Any:
    try:
        return xpath(document, symbol=symbol)
    except lxml.etree.XPathEvalError as exc:  # e.g. an unknown function or $variable
        raise PriceDataError(f"cannot evaluate {xpath.path} on {url}: {exc}") from exc


def _json_number(value: Any, field: str, url: str) -> float:
    # bool is an int in Python, but true is not a price.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PriceDataError(f"non-numeric {field} {value!r:.50} from {url}")
    return float(value)


def _page_number(found: Any, xpath: str, url: str) -> float:
    """The price an XPath result denotes: an element's visible text, a string, or a number."""
    if isinstance(found, list):
        if not found:
            raise PriceDataError(f"no element matches {xpath} on {url}")
        found = found[0]
    if isinstance(found, lxml.etree._Element):
        found = "".join(found.itertext())
    if isinstance(found, float):
        text = str(found)
    elif isinstance(found, str):
        # "7,247.50" -> "7247.50"; some pages separate thousands with a non-breaking space.
        text = found.strip().replace(",", "").replace("\u00a0", "")
    else:
        raise PriceDataError(f"{xpath} selects {found!r:.50} on {url}, not a price")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # also catches number() of nothing, which is NaN
        raise PriceDataError(f"non-numeric price {text!r:.50} at {xpath} on {url}")
    return value
