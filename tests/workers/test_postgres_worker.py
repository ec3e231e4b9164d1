"""PostgresWorker against a real PostgreSQL (and SQLite): upserts, bad rows, outages."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.pool import NullPool

from engine.contract import ItemsFailed
from tests.fixtures.frozen_postgres import FreezablePostgres
from workers.database import DatabaseUnavailable, EmbeddedPostgres
from workers.postgres_worker import PostgresWorker
from workers.records import PriceRecord
from workers.validation import InvalidPrice

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def _record(symbol: str = "BTC", day: int = 0, close: float = 100.0, exchange: str = "X") -> PriceRecord:
    return PriceRecord(
        symbol=symbol, exchange=exchange, price_date=dt.date(2024, 1, 1) + dt.timedelta(days=day),
        open=close * 0.99, high=close * 1.01, low=close * 0.98, close=close, volume=10.0, extracted_time=T0,
    )


def _as_dict(record: PriceRecord, **changes: Any) -> dict[str, Any]:
    row = {
        "symbol": record.symbol, "exchange": record.exchange,
        "price_date": record.price_date.isoformat(), "open": record.open, "high": record.high,
        "low": record.low, "close": record.close, "volume": record.volume,
        "extracted_time": record.extracted_time.isoformat(),
    }
    return row | changes


def _rows(url: str) -> list[tuple[Any, ...]]:
    """(symbol, exchange, price_date, close) of every row, in key order."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT symbol, exchange, price_date, close FROM prices ORDER BY symbol, exchange, price_date"
            ))]
    finally:
        engine.dispose()


def test_same_batch_twice_leaves_one_row_per_key(clean_prices: str) -> None:
    batch = [_record(day=d) for d in range(5)]
    writer = PostgresWorker(clean_prices)
    writer.process_batch(batch)
    writer.process_batch(batch)
    assert len(_rows(clean_prices)) == 5
    assert writer.counters["rows_written"] == 10


def test_a_rewritten_key_takes_the_new_values(clean_prices: str) -> None:
    writer = PostgresWorker(clean_prices)
    writer.process_batch([_record(close=1.0)])
    writer.process_batch([_record(close=2.0)])
    engine = create_engine(clean_prices, poolclass=NullPool)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT open, high, low, close, volume, extracted_time FROM prices")).one()
    engine.dispose()
    assert tuple(row) == (1.98, 2.02, 1.96, 2.0, 10.0, T0)


def test_sql_in_a_symbol_is_stored_literally(clean_prices: str) -> None:
    nasty = "x'); DROP TABLE prices;--"
    PostgresWorker(clean_prices).process_batch([_record(nasty), _record("ETH")])
    assert [r[0] for r in _rows(clean_prices)] == ["ETH", nasty]


@contextlib.contextmanager
def _inserts_executed() -> Iterator[list[str]]:
    """Collects the INSERT statements every engine sends while the block runs."""
    statements: list[str] = []

    def collect(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            statements.append(statement)

    event.listen(Engine, "before_cursor_execute", collect)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", collect)


def test_duplicate_keys_in_one_batch_keep_the_last_in_one_statement(clean_prices: str) -> None:
    batch = [_record(close=1.0), _record("ETH"), _record(close=2.0), _record(close=3.0)]
    writer = PostgresWorker(clean_prices)
    with _inserts_executed() as inserts:
        writer.process_batch(batch)
    assert len(inserts) == 1  # not rescued by the row-by-row fallback
    assert "ON CONFLICT (symbol, exchange, price_date) DO UPDATE" in inserts[0]
    assert _rows(clean_prices) == [
        ("BTC", "X", dt.date(2024, 1, 1), 3.0),
        ("ETH", "X", dt.date(2024, 1, 1), 100.0),
    ]


def test_dicts_with_iso_strings_are_accepted(clean_prices: str) -> None:
    PostgresWorker(clean_prices).process_batch([_as_dict(_record())])
    assert _rows(clean_prices) == [("BTC", "X", dt.date(2024, 1, 1), 100.0)]


def test_process_buffers_and_close_writes_the_rest(clean_prices: str) -> None:
    writer = PostgresWorker(clean_prices, batch_size=3)
    for day in range(5):
        writer.process(_record(day=day))
    assert len(_rows(clean_prices)) == 3  # one full buffer flushed
    writer.close()
    assert len(_rows(clean_prices)) == 5
    writer.close()  # nothing left: a no-op
    assert writer.counters["rows_written"] == 5


@pytest.mark.parametrize(
    "bad, error",
    [
        # The writer checks every row with the rules PriceWorker applies (rows may come from any worker).
        ({"close": "abc"}, InvalidPrice),
        ({"volume": 10**400}, InvalidPrice),
        ({"symbol": None}, InvalidPrice),
        ({"symbol": "nul\x00byte"}, InvalidPrice),
        ({"close": -1.0}, InvalidPrice),
        ({"close": 0.0}, InvalidPrice),
        ({"close": float("nan")}, InvalidPrice),
        ({"close": 1e308}, InvalidPrice),
        ({"high": 1.0, "low": 2.0}, InvalidPrice),
        ({"volume": -1.0}, InvalidPrice),
        ({"price_date": "2024-13-01"}, ValueError),  # not a date at all
        ({"extracted_time": None}, TypeError),
    ],
)
def test_a_bad_row_fails_alone(clean_prices: str, bad: dict[str, Any], error: type[Exception]) -> None:
    good_before, good_after = _record("AAA"), _record("ZZZ")
    bad_item = _as_dict(_record("MMM"), **bad)
    writer = PostgresWorker(clean_prices)
    with pytest.raises(ItemsFailed) as info:
        writer.process_batch([good_before, bad_item, good_after])
    [(item, exc)] = info.value.failures
    assert item is bad_item
    assert isinstance(exc, error)
    assert [r[0] for r in _rows(clean_prices)] == ["AAA", "ZZZ"]
    assert writer.counters["rows_written"] == 2


def test_a_bad_row_through_process_fails_at_close(clean_prices: str) -> None:
    bad_item = _as_dict(_record("MMM"), close="abc")
    writer = PostgresWorker(clean_prices, batch_size=10)
    writer.process(_record("AAA"))
    writer.process(bad_item)
    with pytest.raises(ItemsFailed) as info:
        writer.close()
    assert [item for item, _ in info.value.failures] == [bad_item]
    assert [r[0] for r in _rows(clean_prices)] == ["AAA"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Any symbol the validation rules allow: 1 to 32 characters, no control characters, no outer spaces.
@given(symbol=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=32).map(str.strip).filter(bool))
def test_any_valid_symbol_round_trips(database_url: str, symbol: str) -> None:
    PostgresWorker(database_url).process_batch([_record(symbol, exchange="hypothesis")])
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM prices WHERE symbol = :s AND exchange = 'hypothesis'"), {"s": symbol}
        ).scalar_one()
    engine.dispose()
    assert found == 1


def test_sqlite_through_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'prices.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    writer = PostgresWorker()  # resolves DATABASE_URL
    batch = [_record(day=d) for d in range(3)] + [_as_dict(_record(day=0), close=99.5)]
    writer.process_batch(batch)
    writer.process_batch(batch)
    assert _rows(url) == [
        ("BTC", "X", "2024-01-01", 99.5),
        ("BTC", "X", "2024-01-02", 100.0),
        ("BTC", "X", "2024-01-03", 100.0),
    ]


def test_many_writers_create_the_table_once_and_share_it(database_url: str) -> None:
    """Ten threads build writers on a fresh database at once, as the engine does."""
    name = f"race_{uuid.uuid4().hex[:8]}"
    admin = create_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            PostgresWorker(url).process_batch([_record(f"S{n}", day=d) for d in range(20)])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert len(_rows(url)) == 200
    finally:
        with admin.connect() as conn:  # FORCE: the writers' shared pool still holds connections
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_database_restart_during_writes_loses_and_duplicates_nothing(
    embedded_postgres: EmbeddedPostgres, clean_prices: str
) -> None:
    writer = PostgresWorker(embedded_postgres.url, retry_seconds=30)
    written: list[tuple[str, dt.date]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    batches_done = threading.Semaphore(0)

    def keep_writing() -> None:
        n = 0
        try:
            while not stop.is_set():
                batch = [_record(f"S{n}", day=d) for d in range(20)]
                writer.process_batch(batch)
                written.extend((r.symbol, r.price_date) for r in batch)
                batches_done.release()
                n += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
            batches_done.release()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        assert batches_done.acquire(timeout=30), "no batch written before the outage"
        embedded_postgres.stop()
        time.sleep(2)  # the server stays down ~2 s while the writer retries
        embedded_postgres.start()
        for _ in range(3):  # writes go on after the restart
            assert batches_done.acquire(timeout=30), "no batch written after the restart"
    finally:
        stop.set()
        embedded_postgres.start()  # whatever happened, leave it up for the next tests
        thread.join(60)
    assert errors == []
    assert writer.counters["db_retries"] > 0, "the outage was never hit"
    rows = _rows(clean_prices)
    assert len(rows) == len(written)
    assert {(r[0], r[2]) for r in rows} == set(written)


def test_outage_longer_than_retry_seconds_fails_the_batch(tmp_path: Path) -> None:
    url = f"postgresql://u:s3cret@/db?host={tmp_path}"  # no server behind this socket dir
    writer = PostgresWorker(url, retry_seconds=0.3)
    with pytest.raises(DatabaseUnavailable) as info:
        writer.process_batch([_record()])
    assert "No such file or directory" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert writer.counters["db_retries"] > 0


def test_outage_through_process_fails_every_buffered_item(tmp_path: Path) -> None:
    writer = PostgresWorker(f"postgresql://u@/db?host={tmp_path}", retry_seconds=0, batch_size=10)
    items = [_record(day=d) for d in range(3)]
    for item in items:
        writer.process(item)
    with pytest.raises(ItemsFailed) as info:
        writer.close()
    assert [item for item, _ in info.value.failures] == items
    assert all(isinstance(exc, DatabaseUnavailable) for _, exc in info.value.failures)


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(ValueError, match="PostgreSQL and SQLite"):
        PostgresWorker("mysql+pymysql://u@h/db")


def test_prepare_stage_refuses_an_unreachable_database_with_one_line() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql://writer:s3cret@127.0.0.1:1/crypto"
    with pytest.raises(DatabaseUnavailable) as caught:
        PostgresWorker.prepare_stage({"database_url": url})
    message = str(caught.value)
    assert message.startswith("cannot reach postgresql+psycopg2://writer:***@127.0.0.1:1/crypto: ")
    assert "\n" not in message and "s3cret" not in message


def test_prepare_stage_creates_the_table(clean_prices: str) -> None:
    PostgresWorker.prepare_stage({"database_url": clean_prices})
    with create_engine(clean_prices).connect() as conn:
        assert inspect(conn).has_table("prices")


def test_copy_delimiters_and_null_markers_in_text_are_stored_literally(clean_prices: str) -> None:
    # The bulk path streams rows in COPY's text format, where tab, newline, backslash and
    # \N mean something; stored values must come back exactly as given.
    # (Tab, newline and CR are control characters, which the validation refuses before COPY.)
    symbols = ["BACK\\SLASH", "\\N", "\\t", "\\\\", "ÜNÏCØDÉ ₿", "A B"]
    batch = [_record(symbol, day=i) for i, symbol in enumerate(symbols)]
    batch.append(dataclasses.replace(_record("NONE", day=9), open=None, volume=None))
    PostgresWorker(clean_prices).process_batch(batch)
    engine = create_engine(clean_prices, poolclass=NullPool)
    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT symbol, volume FROM prices")).all())
    engine.dispose()
    assert set(stored) == set(symbols) | {"NONE"}
    assert stored["\\N"] is not None and stored["NONE"] is None


# --- a frozen database: processes stopped, sockets open, nothing answers ---------------------


@pytest.fixture
def frozen_db() -> Iterator[FreezablePostgres]:
    """A private embedded server (the session one must not be frozen), thawed and stopped at the end."""
    with FreezablePostgres() as db:
        yield db


@pytest.mark.timeout(40)
def test_a_frozen_database_fails_the_batch_within_its_bound(frozen_db: FreezablePostgres) -> None:
    bounds = {"retry_seconds": 1.5, "attempt_timeout": 1.0, "connect_timeout": 2}
    writer = PostgresWorker(frozen_db.url, **bounds)
    writer.process_batch([_record(day=0)])  # connected, table created: the next batch reuses the connection
    frozen_db.freeze()
    start = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        writer.process_batch([_record(day=d) for d in range(1, 4)])
    elapsed = time.monotonic() - start
    # The documented worst case: max(retry_seconds, attempt_timeout) + connect_timeout, plus scheduling.
    assert elapsed < max(1.5, 1.0) + 2 + 1.0, f"gave up after {elapsed:.1f}s"
    assert elapsed >= 1.0, "it should have waited for its attempt_timeout first"
    assert "gave up writing 3 row(s)" in str(caught.value)
    assert writer.counters["db_retries"] >= 1
    frozen_db.thaw()
    assert _rows(frozen_db.url) == [("BTC", "X", dt.date(2024, 1, 1), 100.0)]


@pytest.mark.timeout(40)
def test_a_batch_cut_by_a_freeze_is_retried_and_written_once_the_database_thaws(
    frozen_db: FreezablePostgres,
) -> None:
    writer = PostgresWorker(frozen_db.url, retry_seconds=20, attempt_timeout=0.5, connect_timeout=2)
    writer.process_batch([_record(day=0)])
    frozen_db.freeze()
    thaw = threading.Timer(1.5, frozen_db.thaw)
    thaw.start()
    try:
        writer.process_batch([_record(day=d) for d in range(1, 4)])
    finally:
        thaw.join()
    assert writer.counters["db_retries"] >= 1, "the freeze was never met"
    assert len(_rows(frozen_db.url)) == 4


@pytest.mark.timeout(40)
def test_a_frozen_database_through_process_dead_letters_every_buffered_item(frozen_db: FreezablePostgres) -> None:
    writer = PostgresWorker(frozen_db.url, batch_size=10, retry_seconds=0, attempt_timeout=0.5, connect_timeout=2)
    writer.process_batch([_record(day=0)])
    frozen_db.freeze()
    items = [_record(day=d) for d in range(1, 4)]
    for item in items:
        writer.process(item)
    with pytest.raises(ItemsFailed) as info:
        writer.close()
    assert [item for item, _ in info.value.failures] == items
    assert all("no answer from the database within 0.5s" in str(exc) for _, exc in info.value.failures)


def test_timeouts_are_checked_when_the_writer_is_built(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prices.db'}"
    for bad in ({"attempt_timeout": 0}, {"statement_timeout": -1}, {"connect_timeout": "soon"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PostgresWorker(url, **bad)
