"""Writer throughput: rows per second into PostgreSQL, batched versus row by row.

Batched: one real ``PostgresWorker`` (``workers.postgres_worker``) calls
``process_batch`` over ``rows`` records in batches of the shipped batch size (the
``batch_size`` of the PostgresWorker stage in the history pipeline), as one
writer thread of the pipeline does. Row by row: the same worker class and so
the same SQLAlchemy engine, statement and transaction handling, but one record
per ``process_batch`` call (one statement and one commit per row), over fewer
rows. Records are built before the clock starts; every repeat starts from an
empty table (inserts, not updates). The best of ``repeats`` is reported.

For information, the batched figure again with as many writer threads as the
shipped stage has ``instances``, each with its own worker and share of the rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from bench.common import ScenarioResult, at_least, stopwatch
from bench.context import Context
from bench.history import HISTORY_PIPELINE, WRITE_STAGE
from bench.services import count_prices, empty_prices
from engine import load_pipeline
from workers.postgres_worker import PostgresWorker
from workers.records import PriceRecord

log = logging.getLogger(__name__)

NAME = "writer"
FIRST_DAY = dt.date(2000, 1, 1)
DAYS_PER_SYMBOL = 1000


@dataclass(frozen=True)
class Params:
    rows: int  # batched
    single_rows: int  # row by row
    repeats: int
    goal: float = 30_000.0  # rows/s, batched


FULL = Params(rows=100_000, single_rows=5_000, repeats=3)
QUICK = Params(rows=10_000, single_rows=500, repeats=1)


def shipped_stage() -> tuple[int, int]:
    """The PostgresWorker stage's ``batch_size`` and ``instances`` in the shipped history pipeline."""
    stage = load_pipeline(HISTORY_PIPELINE, env={}).stage(WRITE_STAGE)
    if stage.batch_size is None:
        raise RuntimeError(f"{HISTORY_PIPELINE}: stage {WRITE_STAGE} has no batch_size")
    return stage.batch_size, stage.instances


def make_records(count: int) -> list[PriceRecord]:
    """``count`` records with distinct keys, shaped like the fetcher's."""
    now = dt.datetime.now(dt.timezone.utc)
    return [
        PriceRecord(
            symbol=f"B{i // DAYS_PER_SYMBOL}",
            exchange="bench",
            price_date=FIRST_DAY + dt.timedelta(days=i % DAYS_PER_SYMBOL),
            open=100.0 + i % 7,
            high=110.0 + i % 5,
            low=90.0 + i % 3,
            close=95.0 + i % 11,  # within [low, high], as the writer checks
            volume=1000.0 * (i % 13),
            extracted_time=now,
        )
        for i in range(count)
    ]


def write_batched(database_url: str, records: list[PriceRecord], batch_size: int) -> float:
    """Seconds to write ``records`` into an empty table, ``batch_size`` per ``process_batch``."""
    empty_prices(database_url)
    worker = PostgresWorker(database_url, batch_size=batch_size)
    try:
        with stopwatch() as elapsed:
            for start in range(0, len(records), batch_size):
                worker.process_batch(records[start : start + batch_size])
    finally:
        worker.close()
    _check(database_url, len(records))
    return elapsed()


def write_threads(database_url: str, records: list[PriceRecord], batch_size: int, threads: int) -> float:
    """Like :func:`write_batched`, but ``threads`` workers at once, each on its own share of the records."""
    empty_prices(database_url)
    shares = [records[i::threads] for i in range(threads)]
    errors: list[BaseException] = []

    def write(share: list[PriceRecord]) -> None:
        worker = PostgresWorker(database_url, batch_size=batch_size)
        try:
            for start in range(0, len(share), batch_size):
                worker.process_batch(share[start : start + batch_size])
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            worker.close()

    workers = [threading.Thread(target=write, args=(share,), name=f"writer-{i}") for i, share in enumerate(shares)]
    with stopwatch() as elapsed:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    if errors:
        raise RuntimeError(f"a writer thread failed: {errors[0]!r}")
    _check(database_url, len(records))
    return elapsed()


def _check(database_url: str, expected: int) -> None:
    stored = count_prices(database_url)
    if stored != expected:
        raise RuntimeError(f"expected {expected} rows in prices, found {stored}")


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    database_url = ctx.database_url()
    batch_size, instances = shipped_stage()
    records = make_records(max(params.rows, params.single_rows))
    write_batched(database_url, records[:batch_size], batch_size)  # warm-up: table, pool, statement cache

    batched = [write_batched(database_url, records[: params.rows], batch_size) for _ in range(params.repeats)]
    single = [write_batched(database_url, records[: params.single_rows], 1) for _ in range(params.repeats)]
    stage = [
        write_threads(database_url, records[: params.rows], batch_size, instances) for _ in range(params.repeats)
    ]
    batched_rate = params.rows / min(batched)
    single_rate = params.single_rows / min(single)
    stage_rate = params.rows / min(stage)
    log.info(
        "batched %.0f rows/s, row by row %.0f rows/s, %d threads %.0f rows/s",
        batched_rate, single_rate, instances, stage_rate,
    )  # fmt: skip

    result.details.update(
        batch_size=batch_size,
        rows=params.rows,
        single_rows=params.single_rows,
        repeats=params.repeats,
        statistic="best of repeats",
        batched_seconds=[round(s, 3) for s in batched],
        single_seconds=[round(s, 3) for s in single],
        stage_threads=instances,
        stage_seconds=[round(s, 3) for s in stage],
        stage_rows_per_second=round(stage_rate),
        batched_rows_per_second=round(batched_rate),
        single_rows_per_second=round(single_rate),
    )
    result.add(
        f"batched (batch {batch_size}), {params.rows:,} rows",
        batched_rate,
        "rows/s",
        goal=f">= {params.goal:,.0f}",
        passed=at_least(batched_rate, params.goal),
    )
    result.add(f"row by row, {params.single_rows:,} rows", single_rate, "rows/s")
    result.add("batched / row by row", batched_rate / single_rate, "x")
    result.add(f"batched, {instances} threads (the stage's instances)", stage_rate, "rows/s")
    return result
