"""store.query on SQLite and PostgreSQL: the rows the writer stored come back, filtered and summarised."""

from __future__ import annotations

import contextlib
import datetime as dt
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from store.query import PriceRow, close_series, iter_prices, latest_prices, summary
from store.target import PriceStore
from tests.fixtures.frozen_postgres import FreezablePostgres
from tests.store.conftest import T0, record, write
from workers.database import DatabaseUnavailable


def test_an_absent_table_reads_as_empty(store: PriceStore) -> None:
    assert summary(store) == summary(store).__class__(0, [], [], None, None, [])
    assert latest_prices(store) == []
    assert close_series(store, "BTC") == {}
    assert list(iter_prices(store)) == []


def test_summary_counts_names_and_dates(store: PriceStore) -> None:
    write(store, [record("BTC", "kraken", day) for day in range(3)]
          + [record("ETH", "bitstamp", 5), record("DOGE", "kraken", 1)])
    got = summary(store)
    assert got.rows == 5
    assert got.symbols == ["BTC", "DOGE", "ETH"]
    assert got.exchanges == ["bitstamp", "kraken"]
    assert (got.first_date, got.last_date) == (dt.date(2024, 1, 1), dt.date(2024, 1, 6))


def test_summary_latest_is_the_newest_row_of_the_most_traded_symbols(store: PriceStore) -> None:
    write(store, [
        record("BTC", "kraken", 0, close=60000, volume=100),  # an older day: not the latest
        record("BTC", "kraken", 1, close=61000, volume=5),
        record("BTC", "bitstamp", 1, close=61100, volume=50),  # the same day, traded more: this one
        record("ETH", "kraken", 1, close=3000, volume=10),
        record("DOGE", "kraken", 1, close=0.1, volume=1000),
        record("XRP", "kraken", 1, close=0.5, volume=None),  # no volume: ranks last
    ])
    latest = summary(store, top=3).latest
    assert [(r.symbol, r.exchange, r.close) for r in latest] == [
        ("BTC", "bitstamp", 61100), ("ETH", "kraken", 3000), ("DOGE", "kraken", 0.1)
    ]
    assert latest[0].price_date == dt.date(2024, 1, 2)
    assert [r.symbol for r in summary(store, top=10).latest] == ["BTC", "ETH", "DOGE", "XRP"]


def test_latest_prices_is_one_newest_row_per_pair_with_every_field(store: PriceStore) -> None:
    write(store, [record("BTC", "kraken", day, close=100 + day) for day in range(4)]
          + [record("BTC", "bitstamp", 2, close=7.5), record("ETH", "kraken", 0, close=3.0)])
    assert latest_prices(store) == [
        PriceRow("BTC", "bitstamp", dt.date(2024, 1, 3), 7.5 * 0.99, 7.5 * 1.01, 7.5 * 0.98, 7.5, 10.0, T0),
        PriceRow("BTC", "kraken", dt.date(2024, 1, 4), 103 * 0.99, 103 * 1.01, 103 * 0.98, 103.0, 10.0, T0),
        PriceRow("ETH", "kraken", dt.date(2024, 1, 1), 3 * 0.99, 3 * 1.01, 3 * 0.98, 3.0, 10.0, T0),
    ]
    assert latest_prices(store)[0].extracted_time.tzinfo is not None


def test_latest_prices_search_ignores_case_and_matches_symbol_or_exchange(store: PriceStore) -> None:
    write(store, [record("BTC", "kraken"), record("ETH", "bitstamp"), record("WBTC", "bitstamp"),
                  record("A%B", "kraken")])
    assert [(r.symbol, r.exchange) for r in latest_prices(store, "btc")] == [("BTC", "kraken"), ("WBTC", "bitstamp")]
    assert [r.symbol for r in latest_prices(store, "KRAK")] == ["A%B", "BTC"]
    assert [r.symbol for r in latest_prices(store, "%")] == ["A%B"]  # a wildcard character matches itself
    assert [r.symbol for r in latest_prices(store, limit=2)] == ["A%B", "BTC"]


def test_close_series_is_ascending_per_exchange_and_skips_missing_closes(store: PriceStore) -> None:
    write(store, [record("BTC", "kraken", day, close=10 + day) for day in (2, 0, 1)]
          + [record("BTC", "bitstamp", 0, close=20), record("ETH", "kraken", 0, close=1)])
    series = close_series(store, "BTC")
    assert series == {
        "bitstamp": [(dt.date(2024, 1, 1), 20.0)],
        "kraken": [(dt.date(2024, 1, 1), 10.0), (dt.date(2024, 1, 2), 11.0), (dt.date(2024, 1, 3), 12.0)],
    }
    assert close_series(store, "BTC", ["kraken"]) == {"kraken": series["kraken"]}
    assert close_series(store, "NONE") == {}


def test_iter_prices_filters_and_orders_by_key(store: PriceStore) -> None:
    write(store, [record(symbol, exchange, day) for symbol in ("ETH", "BTC") for exchange in ("kraken", "bitstamp")
                  for day in range(5)])
    everything = list(iter_prices(store))
    assert len(everything) == 20
    assert [(r.symbol, r.exchange, r.price_date) for r in everything] == sorted(
        (r.symbol, r.exchange, r.price_date) for r in everything)
    some = list(iter_prices(store, symbol="BTC", exchange=["kraken"], since=dt.date(2024, 1, 2),
                            until=dt.date(2024, 1, 4)))
    assert [(r.symbol, r.exchange, r.price_date.day) for r in some] == [("BTC", "kraken", d) for d in (2, 3, 4)]
    assert len(list(iter_prices(store, symbol=["BTC", "ETH"], exchange="bitstamp"))) == 10


def test_iter_prices_streams_in_batches(store: PriceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("store.query.STREAM_BATCH", 7)
    write(store, [record("BTC", "kraken", day) for day in range(30)])
    rows = iter_prices(store)
    first = next(rows)  # the first batch is read: the iterator holds a connection and an open cursor
    assert first.price_date == dt.date(2024, 1, 1)
    assert [r.price_date.day for r in rows] == list(range(2, 31))


def test_iter_prices_reads_postgresql_through_a_server_side_cursor(
    pg_store: PriceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("store.query.STREAM_BATCH", 7)
    write(pg_store, [record("BTC", "kraken", day) for day in range(30)])
    rows = iter_prices(pg_store)
    with contextlib.closing(rows):  # a reader left open would hold the table against the fixture's DROP
        next(rows)
        # The reading session's last statement fetched one batch of a cursor: the rest is still on the server.
        engine = create_engine(pg_store.url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                fetching = conn.execute(text(
                    "SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE 'FETCH%'"
                )).scalars().all()
        finally:
            engine.dispose()
        assert len(fetching) == 1 and fetching[0].startswith("FETCH FORWARD ")
        assert int(fetching[0].split()[2]) <= 7  # a batch at a time (the first row may come on its own)
        assert len(list(rows)) == 29


def test_an_unreachable_database_is_one_line() -> None:
    store = PriceStore("postgresql+psycopg2://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable) as caught:
        summary(store)
    message = str(caught.value)
    assert "\n" not in message and "secret" not in message and "127.0.0.1" in message
    with pytest.raises(DatabaseUnavailable):
        list(iter_prices(store))


def test_a_frozen_database_ends_a_read_within_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("store.query.STREAM_BATCH", 5)
    monkeypatch.setattr("store.query.CONNECT_TIMEOUT", 1.0)
    monkeypatch.setattr("store.query.CALL_TIMEOUT", 1.0)
    with FreezablePostgres() as db:
        store = PriceStore(db.url)
        write(store, [record("BTC", "kraken", day) for day in range(20)])
        rows = iter_prices(store)
        with contextlib.closing(rows):
            next(rows)  # a connection is open and the first batch read
            db.freeze()
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="no answer from the database within 1s"):
                list(rows)  # the next batch never comes: the connection is cut
            # A new read cannot even connect: libpq's connect_timeout (at least 2 s) ends it.
            with pytest.raises(DatabaseUnavailable, match="cannot reach"):
                summary(store)
            assert time.monotonic() - started < 15  # ends, never hangs
