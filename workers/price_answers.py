"""Reading the price server's answers into checked :class:`PriceRecord` s.

Two shapes: the API's JSON price object (:func:`record_from_json`) and a quote
page's HTML read with XPaths (:func:`record_from_quote_page`).  A body that is
not a price raises :class:`PriceDataError`; a price that must not be stored
raises :class:`workers.validation.InvalidPrice` (see :func:`workers.validation.check_price`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

import lxml.etree
import lxml.html

from workers.price_client import PriceDataError
from workers.records import PriceRecord
from workers.validation import check_price

__all__ = ["DEFAULT_DATE_XPATH", "DEFAULT_XPATH", "compile_xpath", "record_from_json", "record_from_quote_page"]

# The quote page marks its live price with this element; ``$symbol`` is bound to
# the upper-case symbol so the header quoting other coins cannot match.  Its
# ``value`` attribute is exact where the visible text is rounded to 2 decimals.
DEFAULT_XPATH = '//fin-streamer[@data-symbol=$symbol][@data-field="regularMarketPrice"]/@value'
# Where the quote page says which day its price is for ("As of 2020-04-30 23:59 UTC").
DEFAULT_DATE_XPATH = '//*[@id="quote-market-notice"]'
_PRICE_FIELDS = ("open", "high", "low", "close", "volume")
_DAY_IN_TEXT_RE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")


def record_from_json(data: Any, *, symbol: str, exchange: str, day: dt.date, url: str) -> PriceRecord:
    """The record of one API price object (``{"open": ..., "volume": ...}``) fetched from ``url``."""
    if not isinstance(data, dict):
        raise PriceDataError(f"expected a price object from {url}, got {data!r:.200}")
    # In the API every field is a number: null is as good as missing (check_price would allow it).
    missing = [field for field in _PRICE_FIELDS if data.get(field) is None]
    if missing:
        raise PriceDataError(f"price object from {url} lacks {', '.join(missing)}")
    fields = {"symbol": symbol.upper(), "exchange": exchange, "price_date": day}
    fields.update((field, data[field]) for field in _PRICE_FIELDS)
    check_price(fields, url)
    # Checked: each value is an int or a float within bounds, so float() is exact enough and cannot overflow.
    fields.update((field, float(data[field])) for field in _PRICE_FIELDS)
    return PriceRecord(**fields, extracted_time=dt.datetime.now(dt.timezone.utc))


def record_from_quote_page(
    content: bytes,
    *,
    symbol: str,
    url: str,
    xpath: lxml.etree.XPath,
    date_xpath: lxml.etree.XPath | None,
) -> PriceRecord:
    """The record a quote page gives: exchange ``"quote"``, only ``close`` known.

    ``xpath`` finds the price (``$symbol`` is bound to ``symbol``); the first valid
    ``YYYY-MM-DD`` in the text ``date_xpath`` finds is the day, else today (UTC).
    """
    try:
        document = lxml.html.fromstring(content)
    except (lxml.etree.ParserError, ValueError) as exc:
        raise PriceDataError(f"unreadable HTML from {url}: {exc}") from exc
    close = _page_number(_evaluate(xpath, document, symbol, url), xpath.path, url)
    now = dt.datetime.now(dt.timezone.utc)
    day = None if date_xpath is None else _page_day(_evaluate(date_xpath, document, symbol, url))
    record = PriceRecord(
        symbol=symbol,
        exchange="quote",
        price_date=day or now.date(),
        open=None,
        high=None,
        low=None,
        close=close,
        volume=None,
        extracted_time=now,
    )
    check_price(record, url)
    return record


def _page_day(found: Any) -> dt.date | None:
    """The first valid ``YYYY-MM-DD`` in the text of an XPath result, if any."""
    texts = found if isinstance(found, list) else [found]
    for text in texts:
        text = "".join(text.itertext()) if isinstance(text, lxml.etree._Element) else str(text)
        for day in _DAY_IN_TEXT_RE.findall(text):
            try:
                return dt.date.fromisoformat(day)
            except ValueError:
                continue
    return None


def compile_xpath(expression: str, name: str) -> lxml.etree.XPath:
    """``expression`` compiled; ``ValueError`` naming the parameter ``name`` if it is not an XPath."""
    try:
        return lxml.etree.XPath(expression)
    except (lxml.etree.XPathSyntaxError, TypeError) as exc:
        raise ValueError(f"bad {name} {expression!r}: {exc}") from exc


def _evaluate(xpath: lxml.etree.XPath, document: lxml.html.HtmlElement, symbol: str, url: str) -> Any:
    try:
        return xpath(document, symbol=symbol)
    except lxml.etree.XPathEvalError as exc:  # e.g. an unknown function or $variable
        raise PriceDataError(f"cannot evaluate {xpath.path} on {url}: {exc}") from exc


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
