"""A price store on both backends: ``store`` is an empty table in SQLite or in the embedded PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from store.schema import price_table
from store.target import PriceStore
from workers.postgres_worker import PostgresWorker
from workers.records import PriceRecord

MAIN = Path(__file__).resolve().parents[2] / "main.py"
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


@pytest.fixture
def pg_store(database_url: str) -> Iterator[PriceStore]:
    """A price table of the test's own in the embedded PostgreSQL (not created yet; dropped afterwards)."""
    store = PriceStore(database_url, f"prices_{uuid.uuid4().hex[:12]}")  # tests never see another's rows
    yield store
    drop(store)


def drop(store: PriceStore) -> None:
    """Drop ``store``'s table if it exists."""
    engine = create_engine(store.url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            price_table(store.table).drop(conn, checkfirst=True)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> PriceStore:
    """A fresh, not yet created price table in SQLite or PostgreSQL."""
    if request.param == "sqlite":
        return PriceStore(f"sqlite:///{tmp_path / 'prices.db'}", "prices")
    return request.getfixturevalue("pg_store")


def price_pipeline(path: Path, *, items: list[list], writer_params: dict[str, Any], rate: float = 1.0,
                   name: str = "prices") -> Path:
    """Write a pipeline file: QuotedPrices (``items``, ``rate``) -> PostgresWorker (``writer_params``)."""
    document = {
        "name": name,
        "monitor_interval": 0.1,
        "queues": [{"name": "records"}],
        "workers": [
            {"name": "Prices", "location": "tests.store.workers", "class": "QuotedPrices",
             "params": {"rate": rate}, "input_values": items, "output_queues": "records"},
            {"name": "Writer", "location": "workers.postgres_worker", "class": "PostgresWorker",
             "input_queue": "records", "batch_size": 200, "params": writer_params},
        ],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def main_py(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python main.py ARGS`` in a subprocess, as a user runs it; PIPELINE_LOCATION and DATABASE_URL from ``env``."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("PIPELINE_LOCATION", "DATABASE_URL", "POSTGRES_HOST", "PRICE_SERVER_URL")}
    base["PIPELINE_LOCATION"] = "does-not-exist.yaml"  # never the repository's default pipeline
    return subprocess.run([sys.executable, str(MAIN), *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, input=input)
