"""Records passed between the shipped workers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PriceTask:
    """One price to fetch: a symbol on an exchange for a day."""

    symbol: str
    exchange: str
    date: str  # YYYY-MM-DD, or "latest"


@dataclass(frozen=True, slots=True)
class PriceRecord:
    """One stored price row; (symbol, exchange, price_date) is its key."""

    symbol: str
    exchange: str
    price_date: dt.date
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float | None
    extracted_time: dt.datetime  # UTC, timezone-aware
