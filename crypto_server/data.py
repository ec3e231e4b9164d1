"""The price data the server answers from: an immutable, in-memory :class:`Dataset`.

This module is the model only and imports nothing else of the package; the loaders
(:mod:`.synthetic`, :mod:`.csvload`) build on it, and :func:`.load.load_dataset` picks one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

# One day of one series is stored as five doubles in this order; NaN open = no data that day.
_FIELDS = 5


class DataError(ValueError):
    """Price data could not be loaded; the message names the file (and line) at fault."""


class UnknownName(LookupError):
    """An exchange or symbol the dataset does not know (the API answers 404)."""


def parse_day(value: str | dt.date) -> dt.date:
    """A ``datetime.date`` from a date or a strict ``YYYY-MM-DD`` string; ``ValueError`` otherwise."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    # fromisoformat alone also takes "20200101" and "2020-W01-1"; the API promises YYYY-MM-DD only.
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"invalid date {value!r}: {exc}") from None


@dataclass(frozen=True)
class DayRange:
    """The first and last day the dataset covers (inclusive); iterating yields every day."""

    first: dt.date
    last: dt.date

    def __iter__(self) -> Iterator[dt.date]:
        for ordinal in range(self.first.toordinal(), self.last.toordinal() + 1):
            yield dt.date.fromordinal(ordinal)

    def __len__(self) -> int:
        return self.last.toordinal() - self.first.toordinal() + 1


@dataclass(frozen=True)
class Asset:
    """What the pages say about a symbol. ``founded`` is a year, or None when unknown."""

    symbol: str  # upper case, as shown on pages
    name: str
    founded: int | None = None
    note: str = ""


class _Series:
    """Daily OHLCV of one (exchange, symbol), packed as doubles from ``start`` (a date ordinal)."""

    __slots__ = ("start", "values", "count")

    def __init__(self, start: int, values: array, count: int) -> None:
        self.start = start
        self.values = values
        self.count = count  # days with data

    def __len__(self) -> int:
        return len(self.values) // _FIELDS

    def row(self, ordinal: int) -> tuple[float, float, float, float, float] | None:
        i = (ordinal - self.start) * _FIELDS
        if i < 0 or i >= len(self.values) or math.isnan(self.values[i]):
            return None
        o, h, l, c, v = self.values[i : i + _FIELDS]
        return o, h, l, c, v


def _pack(rows: Mapping[int, tuple[float, float, float, float, float]]) -> _Series:
    """Pack {ordinal: (o, h, l, c, v)} densely; missing days in between become NaN rows."""
    if not rows:
        return _Series(0, array("d"), 0)
    start, end = min(rows), max(rows)
    values = [math.nan] * ((end - start + 1) * _FIELDS)
    for ordinal, row in rows.items():
        i = (ordinal - start) * _FIELDS
        values[i : i + _FIELDS] = row
    return _Series(start, array("d", values), len(rows))


class Dataset:
    """Daily prices per exchange and symbol, held in memory and never changed after construction.

    Safe to share between threads and servers. ``price()`` returns exactly the JSON
    body that ``GET /price/<exchange>/<symbol>/<day>`` answers, so tests can compute
    expected answers without HTTP.
    """

    __slots__ = ("_series", "_exchanges", "_symbols", "_assets", "_days", "_quotes", "_rows", "source")

    def __init__(
        self,
        series: Mapping[tuple[str, str], _Series],
        *,
        exchanges: Iterable[str],
        symbols: Iterable[str],
        assets: Mapping[str, Asset],
        source: str,
        days: DayRange | None = None,
    ) -> None:
        exchanges = tuple(sorted(set(exchanges)))
        symbols = tuple(sorted({s.lower() for s in symbols}))
        if not exchanges or not symbols:
            raise DataError(f"{source}: no exchanges or no symbols")
        filled = [s for s in series.values() if len(s)]
        if days is None:
            if not filled:
                raise DataError(f"{source}: no price rows at all")
            days = DayRange(
                dt.date.fromordinal(min(s.start for s in filled)),
                dt.date.fromordinal(max(s.start + len(s) - 1 for s in filled)),
            )
        init = object.__setattr__
        init(self, "_series", MappingProxyType(dict(series)))
        init(self, "_exchanges", exchanges)
        init(self, "_symbols", symbols)
        init(self, "_assets", MappingProxyType({s: assets.get(s) or Asset(s.upper(), s.upper()) for s in symbols}))
        init(self, "_days", days)
        init(self, "_rows", sum(s.count for s in filled))
        init(self, "source", source)
        # Quotes are read on every /quote request; work them out once here.
        by_symbol: dict[str, list[_Series]] = {s: [] for s in symbols}
        for (_, symbol), s in self._series.items():
            if len(s):
                by_symbol[symbol].append(s)
        init(self, "_quotes", MappingProxyType({s: self._consolidated_quote(s, by_symbol[s]) for s in symbols}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Dataset is immutable")

    def __repr__(self) -> str:
        return (
            f"<Dataset {self.source}: {len(self._exchanges)} exchanges, {len(self._symbols)} symbols, "
            f"{self._days.first}..{self._days.last}, {self._rows} rows>"
        )

    def __len__(self) -> int:
        """Number of (exchange, symbol, day) combinations that have a price."""
        return self._rows

    @property
    def exchanges(self) -> list[str]:
        """Exchange names, sorted."""
        return list(self._exchanges)

    @property
    def symbols(self) -> list[str]:
        """Symbols, lower case, sorted."""
        return list(self._symbols)

    @property
    def days(self) -> DayRange:
        """First and last day of data (``/days`` serves these)."""
        return self._days

    def asset(self, symbol: str) -> Asset:
        """Name and founding year of a symbol (case-insensitive); ``UnknownName`` if unknown."""
        try:
            return self._assets[symbol.lower()]
        except KeyError:
            raise UnknownName(f"unknown symbol {symbol!r}") from None

    def price(self, exchange: str, symbol: str, day: str | dt.date) -> dict[str, Any] | None:
        """The day's OHLCV as the API returns it, or None when there is no price that day.

        ``symbol`` is case-insensitive; ``exchange`` must match exactly. Raises
        ``UnknownName`` for an unknown exchange or symbol and ``ValueError`` for a
        malformed day. Each call returns a new dict.
        """
        key = (exchange, symbol.lower())
        series = self._series.get(key)
        if series is None:
            self._check_names(*key)
        day = parse_day(day)
        row = series.row(day.toordinal()) if series is not None else None
        if row is None:
            return None
        o, h, l, c, v = row
        return {
            "exchange": exchange,
            "symbol": key[1],
            "open": o,
            "high": h,
            "low": l,
            "close": c,
            "volume": v,
            "day": day.isoformat(),
        }

    def quote(self, symbol: str) -> dict[str, Any] | None:
        """The consolidated quote the ``/quote/<symbol>`` page shows, None if the symbol has no data.

        Keys: ``symbol`` (upper case), ``name``, ``day`` (latest day with data for the
        symbol), ``price`` (mean close over exchanges with data that day, rounded like the
        page's ``value`` attribute), ``open`` (mean open), ``change`` and ``change_percent``
        (since the open), ``high``, ``low``, ``volume`` (summed) and ``exchanges``.
        """
        try:
            quote = self._quotes[symbol.lower()]
        except KeyError:
            raise UnknownName(f"unknown symbol {symbol!r}") from None
        return dict(quote) if quote else None

    def _check_names(self, exchange: str, symbol: str) -> None:
        if exchange not in self._exchanges:
            raise UnknownName(f"unknown exchange {exchange!r}")
        if symbol not in self._assets:
            raise UnknownName(f"unknown symbol {symbol!r}")

    def _consolidated_quote(self, symbol: str, series: list[_Series]) -> dict[str, Any] | None:
        if not series:
            return None
        last = max(s.start + len(s) - 1 for s in series)
        rows = [r for s in series if (r := s.row(last)) is not None]
        # The last row of a packed series always has data, so rows is never empty.
        price = _round_price(sum(r[3] for r in rows) / len(rows))
        open_ = _round_price(sum(r[0] for r in rows) / len(rows))
        change = price - open_
        return {
            "symbol": symbol.upper(),
            "name": self._assets[symbol].name,
            "day": dt.date.fromordinal(last).isoformat(),
            "price": price,
            "open": open_,
            "change": _round_price(change) if change else 0.0,
            "change_percent": round(100.0 * change / open_, 2) if open_ else 0.0,
            "high": max(r[1] for r in rows),
            "low": min(r[2] for r in rows),
            "volume": round(sum(r[4] for r in rows), 8),
            "exchanges": len(rows),
        }


def _round_price(x: float) -> float:
    """Round to six significant digits, as exchanges quote (7150.23, 0.0213456)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, max(0, 5 - math.floor(math.log10(abs(x)))))
