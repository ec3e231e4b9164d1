"""What a price record must be before it is stored, and what a symbol must be before it is asked for.

:func:`check_price` is the one rule book: ``PriceWorker`` applies it to every
answer before it becomes a record, and a writer may apply it again to rows that
did not come through ``PriceWorker``.  Messages are short and name the field
and its value, so a dead-letter entry says what was wrong without the page.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import reprlib
from collections.abc import Mapping
from typing import Any

from workers.records import PriceRecord

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_PRICE",
    "MAX_VOLUME",
    "MIN_PRICE_DATE",
    "InvalidPrice",
    "check_price",
    "clean_name",
]

# No asset has traded anywhere near a trillion per unit (the dearest, Berkshire Hathaway A
# and Bitcoin, are six orders of magnitude below), while what broken servers and parsers
# produce lands above it: 1e308, 2**63, millisecond timestamps (1.7e12), a price glued
# to its volume.  There is no lower bound but > 0: tokens quoted in BTC trade at 1e-10.
MAX_PRICE = 1e12
# Daily volume in units of the asset; far above any exchange's, far below 1e308-style garbage.
MAX_VOLUME = 1e20
# Older than any price this pipeline can fetch: earlier days are placeholders (0001-01-01...).
MIN_PRICE_DATE = dt.date(1900, 1, 1)
# A price is for a day that has begun somewhere: UTC+14 is up to a day ahead of UTC.
_FUTURE_SLACK = dt.timedelta(days=1)
# Symbols and exchange names are short codes ("BTC", "BRK.B", "coinbase-pro"); anything
# longer is a page's prose or garbage, and would end up in URLs, logs and the database.
MAX_NAME_LENGTH = 32

_PRICES = ("open", "high", "low", "close")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (category Cc)


class InvalidPrice(ValueError):
    """A price record that must not be stored; the message names each bad field and value."""


def clean_name(value: Any, field: str = "symbol") -> str:
    """A symbol (or exchange name) stripped of spaces; ``ValueError`` with a short message unless usable.

    Usable: a string of 1 to :data:`MAX_NAME_LENGTH` characters, none of them a control character.
    """
    problem = _name_problem(field, value.strip() if isinstance(value, str) else value)
    if problem:
        raise ValueError(problem)
    return value.strip()


def check_price(record: PriceRecord | Mapping[str, Any], source: str = "") -> None:
    """Raise :class:`InvalidPrice` unless ``record`` may be stored.

    ``record`` is a :class:`PriceRecord` or a mapping with its fields (a writer's row).
    The rules: ``symbol`` and ``exchange`` are names as :func:`clean_name` wants
    them; ``price_date`` is a date from :data:`MIN_PRICE_DATE` to tomorrow (UTC);
    ``open``, ``high``, ``low``, ``close`` are each absent (``None``) or a finite
    number in (0, :data:`MAX_PRICE`]; ``volume`` is absent or a finite number in
    [0, :data:`MAX_VOLUME`]; ``low <= open, close <= high`` for those present.  A
    number is an ``int`` or ``float``, never a ``bool`` or a string.  ``source``
    (a URL, say) starts the message: ``invalid price from <source>: high 1.0 is below low 2.0``.
    """
    get = record.get if isinstance(record, Mapping) else lambda name: getattr(record, name, None)
    problems = [p for p in (_name_problem("symbol", get("symbol")), _name_problem("exchange", get("exchange"))) if p]
    date_problem = _date_problem(get("price_date"))
    if date_problem:
        problems.append(date_problem)
    good: dict[str, float] = {}
    for field in (*_PRICES, "volume"):
        value = get(field)
        if value is None:
            continue
        problem = _number_problem(field, value)
        if problem:
            problems.append(problem)
        else:
            good[field] = value
    problems += _order_problems(good)
    if problems:
        where = f" from {source}" if source else ""
        raise InvalidPrice(f"invalid price{where}: {'; '.join(problems)}")


def _name_problem(field: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{field} {_preview(value)} is not a non-empty string"
    if len(value) > MAX_NAME_LENGTH:
        return f"{field} of {len(value):,} characters is longer than {MAX_NAME_LENGTH}: {_preview(value)}"
    if _CONTROL.search(value):
        return f"{field} {_preview(value)} holds a control character"
    return None


def _date_problem(value: Any) -> str | None:
    # A datetime is a date too, but a price row holds a day.
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        return f"price_date {_preview(value)} is not a date"
    if value < MIN_PRICE_DATE:
        return f"price_date {value} is before {MIN_PRICE_DATE}"
    if value > dt.datetime.now(dt.timezone.utc).date() + _FUTURE_SLACK:
        return f"price_date {value} is in the future"
    return None


def _number_problem(field: str, value: Any) -> str | None:
    # bool is an int in Python, but true is not a price; ints are compared exactly
    # (a 400-digit JSON integer must not overflow a float conversion first).
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{field} {_preview(value)} is not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{field} {_preview(value)} is not finite"
    if field == "volume":
        if value < 0:
            return f"volume {_preview(value)} is negative"
        if value > MAX_VOLUME:
            return f"volume {_preview(value)} is over {MAX_VOLUME:g}"
        return None
    if value <= 0:
        return f"{field} {_preview(value)} is not positive"
    if value > MAX_PRICE:
        return f"{field} {_preview(value)} is over {MAX_PRICE:g}"
    return None


def _order_problems(prices: Mapping[str, float]) -> list[str]:
    """``low <= open, close <= high``, for the prices that are known and valid."""
    low, high = prices.get("low"), prices.get("high")
    if low is not None and high is not None and high < low:
        return [f"high {high} is below low {low}"]
    problems = []
    for field in ("open", "close"):
        value = prices.get(field)
        if value is None:
            continue
        if low is not None and value < low:
            problems.append(f"{field} {value} is below low {low}")
        if high is not None and value > high:
            problems.append(f"{field} {value} is above high {high}")
    return problems


def _preview(value: Any) -> str:
    """A short repr: a 10 MB string or a 5000-digit integer must not make a 10 MB message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VOLUME:
        return f"{'-' if value < 0 else ''}1e{math.log10(abs(value)):.0f} (an integer)"
    return reprlib.repr(value)
