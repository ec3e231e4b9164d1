"""A price source for the store tests' pipelines: fixed prices, scaled as if quoted in another currency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from workers.records import PriceRecord


class QuotedPrices:
    """Source: an item ``[symbol, exchange, days]`` yields that many daily prices from 2024-01-01.

    Each close is ``base * rate`` (``base`` grows by one a day), so two pipelines with
    different ``rate`` make the same keys with different values.
    """

    def __init__(self, rate: float = 1.0, base: float = 100.0) -> None:
        self.rate = rate
        self.base = base

    def process(self, item: list) -> Iterator[PriceRecord]:
        symbol, exchange, days = item
        for day in range(days):
            close = (self.base + day) * self.rate
            yield PriceRecord(
                symbol=symbol, exchange=exchange, price_date=dt.date(2024, 1, 1) + dt.timedelta(days=day),
                open=close, high=close * 1.01, low=close * 0.99, close=close, volume=1000.0 + day,
                extracted_time=dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc),
            )
