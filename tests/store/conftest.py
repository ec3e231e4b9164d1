"""A price store on both backends: ``store`` is an empty table in SQLite or in the embedded PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from store.schema import price_table
from store.target import PriceStore
from workers.postgres_worker import PostgresWorker
from workers.records import PriceRecord

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def record(symbol: str = "BTC", exchange: str = "kraken", day: int = 0, close: float = 100.0,
           volume: float | None = 10.0, start: dt.date = dt.date(2024, 1, 1)) -> PriceRecord:
    """A valid price (close within low..high) of ``symbol`` on ``exchange``, ``day`` days after ``start``."""
    return PriceRecord(
        symbol=symbol, exchange=exchange, price_date=start + dt.timedelta(days=day),
        open=close * 0.99, high=close * 1.01, low=close * 0.98, close=close, volume=volume, extracted_time=T0,
    )


def write(store: PriceStore, records: Iterable[PriceRecord]) -> None:
    """Store ``records`` through the pipeline's own writer."""
    writer = PostgresWorker(store.url, table=store.table, retry_seconds=5)
    writer.process_batch(list(records))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PriceStore]:
    """A fresh, not yet created price table in SQLite or PostgreSQL (dropped afterwards)."""
    if request.param == "sqlite":
        yield PriceStore(f"sqlite:///{tmp_path / 'prices.db'}", "prices")
        return
    url = request.getfixturevalue("database_url")
    table = f"prices_{uuid.uuid4().hex[:12]}"  # a table of the test's own: tests never see another's rows
    yield PriceStore(url, table)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            price_table(table).drop(conn, checkfirst=True)
    finally:
        engine.dispose()
