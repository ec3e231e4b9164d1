"""The database goes away: briefly (the writer retries, nothing lost or doubled), for too long,
or it freezes (its processes stopped: connections stay open and nothing answers).
"""

from __future__ import annotations

import math
import time

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from engine.report import EXIT_FAILURES, EXIT_OK
from tests.faults.conftest import (
    Watcher,
    check_accounting,
    count_rows,
    plan,
    price_pipeline,
    priced,
)
from tests.fixtures.frozen_postgres import FreezablePostgres

SYMBOLS = ["btc", "eth", "ltc", "xrp", "ada", "doge", "xlm", "eos"]
START, END = "2020-04-01", "2020-04-10"
EXCHANGES = ["bitstamp", "coinbase-pro", "kraken"]


@pytest.fixture
def outage(embedded_postgres, clean_prices):
    """``outage(seconds)``: stop the test database, wait, start it again (always left running)."""
    if embedded_postgres.url != clean_prices:
        pytest.skip("the test database is not the embedded server (TEST_DATABASE_URL is set)")

    def down_for(seconds: float) -> None:
        embedded_postgres.stop()
        try:
            time.sleep(seconds)
        finally:
            embedded_postgres.start()

    yield down_for
    embedded_postgres.start()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_database_down_for_seconds_mid_run_loses_and_duplicates_no_row(
    fault_server, run_pipeline, clean_prices, dataset, outage
):
    tasks = plan(SYMBOLS, EXCHANGES, START, END)  # 240 tasks
    report = _run_through_a_3s_outage(fault_server, run_pipeline, clean_prices, outage, retry_seconds=30)

    assert report.exit_code == EXIT_OK, report.reason
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert done.entries == []
    assert done.stored == set(priced(tasks, dataset))
    writer = report.stage("Writer")
    assert writer.counters.get("db_retries", 0) > 0, "no write met the outage"
    assert writer.counters["rows_written"] == len(done.stored)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_database_down_longer_than_retry_seconds_dead_letters_the_unwritten_rows(
    fault_server, run_pipeline, clean_prices, dataset, outage
):
    tasks = plan(SYMBOLS, EXCHANGES, START, END)
    report = _run_through_a_3s_outage(fault_server, run_pipeline, clean_prices, outage, retry_seconds=0.5)

    done = _check_writer_gave_up(report, tasks, dataset, clean_prices)
    assert len(done.stored) >= 10


def _check_writer_gave_up(report, tasks, dataset, database_url):
    """The run went on; every task is accounted for; some batches were given up, each with its reason."""
    # Failed rows are reported and the run goes on to its end, which then says it finished with failures.
    assert report.exit_code == EXIT_FAILURES, report.reason
    assert report.errors.get("DatabaseUnavailable", 0) == report.stage("Writer").failed > 0
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=database_url)
    lost_writes = [e for e in done.entries if e["stage"] == "Writer"]
    assert lost_writes, "no batch outlasted its retries"
    assert all(e["kind"] == "failed" and e["error_type"] == "DatabaseUnavailable" for e in lost_writes)
    assert all("gave up writing" in e["message"] for e in lost_writes)
    return done


def _run_through_a_3s_outage(fault_server, run_pipeline, database_url, outage, *, retry_seconds: float):
    """Run the price pipeline; stop the database for 3 s once 10 rows are in."""
    server = fault_server(sleep=0.03)
    watcher = Watcher(lambda: count_rows(database_url) >= 10, lambda: outage(3.0))
    watcher.start()
    try:
        report = run_pipeline(price_pipeline(
            server_url=server.url, database_url=database_url, symbols=SYMBOLS, start=START, end=END,
            batch_size=10, retry_seconds=retry_seconds,
        ))
    finally:
        watcher.finish()
    assert watcher.fired.is_set(), "the database was never stopped"
    return report


@pytest.fixture
def freezable_db():
    """A private embedded server: the session's one must never be frozen. Thawed and stopped at the end."""
    with FreezablePostgres() as db:
        yield db


def _has_prices_table(url: str) -> bool:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("prices")
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_database_frozen_mid_run_dead_letters_the_unwritten_rows_within_the_writers_bound(
    fault_server, run_pipeline, dataset, freezable_db
):
    url = freezable_db.url
    symbols, start, end = ["btc", "eth"], "2020-04-01", "2020-04-04"
    tasks = plan(symbols, EXCHANGES, start, end)  # 24 tasks
    retry_seconds, attempt_timeout, connect_timeout = 1.0, 0.5, 2
    document = price_pipeline(
        server_url=fault_server().url, database_url=url, symbols=symbols, start=start, end=end,
        writers=1, batch_size=100, batch_timeout=1.0, retry_seconds=retry_seconds,
    )
    document["workers"][2]["params"].update(attempt_timeout=attempt_timeout, connect_timeout=connect_timeout)
    # Freeze once the writer's prepare_stage has made the table (it keeps that connection in its pool).
    frozen_at: list[float] = []

    def freeze() -> None:
        freezable_db.freeze()
        frozen_at.append(time.monotonic())

    watcher = Watcher(lambda: _has_prices_table(url), freeze)
    watcher.start()
    try:
        report = run_pipeline(document)
        ended_at = time.monotonic()
    finally:
        watcher.finish()
        freezable_db.thaw()
    assert frozen_at, "the database was never frozen"

    # Each batch ends within max(retry_seconds, attempt_timeout) + connect_timeout. All 24 rows fit one
    # batch; a second can only hold rows that came after the first closed: at most 2 batches, 1 writer.
    per_batch = max(retry_seconds, attempt_timeout) + connect_timeout
    bound = math.ceil(2 / 1) * per_batch + 1.0  # + pills, the report, scheduling
    assert ended_at - frozen_at[0] < bound, f"the run ended {ended_at - frozen_at[0]:.1f}s after the freeze"
    _check_writer_gave_up(report, tasks, dataset, url)
    assert report.stage("Writer").counters.get("db_retries", 0) >= 1
