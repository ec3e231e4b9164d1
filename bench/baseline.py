"""Against a naive baseline: the efficiency workload done the way a first script would do it.

The baseline is one loop: for each task, ``requests.get`` the price (no session,
no threads), then ``psycopg2.connect`` + ``INSERT`` + ``commit`` + ``close`` for
its row. At R=2000 and L=0.2 s that is over 400 s, so it runs on a sample of the
same tasks (``sample``) against the same server (latency L) and database, and
its time is extrapolated linearly to R (each task costs the same: one request,
one connection, one row); the output says so.

The pipeline's time is the best whole-run time of the efficiency scenario at
the largest W when that scenario ran with the same R and L in this run;
otherwise this scenario runs the pipeline itself (best of ``repeats``).
Speed-up = naive time for R / pipeline time for R.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg2
import requests
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from bench.common import ScenarioResult, stopwatch
from bench.context import Context
from bench.history import SERVER_SEED, price_tasks, run_history, warm_up
from bench.services import count_prices, empty_prices, libpq_params, price_server
from workers.postgres_worker import prices
from workers.records import PriceTask

log = logging.getLogger(__name__)

NAME = "baseline"

INSERT = """
    INSERT INTO prices (symbol, exchange, price_date, open, high, low, close, volume, extracted_time)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())
    ON CONFLICT (symbol, exchange, price_date) DO UPDATE SET
        open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, extracted_time = excluded.extracted_time
"""


@dataclass(frozen=True)
class Params:
    requests: int  # R of the workload the speed-up is about
    latency: float  # L
    fetchers: int  # W of the pipeline it is compared with
    sample: int  # tasks the naive loop really runs
    repeats: int  # pipeline runs, if this scenario has to run it itself


FULL = Params(requests=2000, latency=0.2, fetchers=100, sample=100, repeats=2)
QUICK = Params(requests=300, latency=0.1, fetchers=100, sample=20, repeats=1)


def naive_loop(base_url: str, tasks: list[PriceTask], connect: dict[str, Any]) -> int:
    """What a first script does: one GET, then one connection per row. Returns rows inserted."""
    rows = 0
    for task in tasks:
        response = requests.get(f"{base_url}/price/{task.exchange}/{task.symbol}/{task.date}", timeout=30)
        response.raise_for_status()
        data = response.json()
        if data is None:
            continue
        conn = psycopg2.connect(**connect)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    INSERT,
                    (task.symbol.upper(), task.exchange, task.date, data["open"], data["high"],
                     data["low"], data["close"], data["volume"]),
                )  # fmt: skip
            conn.commit()
        finally:
            conn.close()
        rows += 1
    return rows


def _pipeline_seconds(ctx: Context, params: Params) -> tuple[float, str] | None:
    """The efficiency scenario's best whole-run time for this R, L and W, if it ran."""
    earlier = ctx.results.get("efficiency")
    if earlier is None or earlier.error:
        return None
    used = earlier.details.get("params", {})
    best = earlier.details.get("best", {}).get(str(params.fetchers))
    if best is None or used.get("requests") != params.requests or used.get("latency") != params.latency:
        return None
    return best["run_seconds"], "from the efficiency scenario"


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    database_url = ctx.database_url()
    tasks = price_tasks(params.requests)
    sample = tasks[: params.sample]
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        prices.create(engine, checkfirst=True)  # the table the pipeline writes to
    finally:
        engine.dispose()

    with price_server(sleep=params.latency, jitter=0.0, seed=SERVER_SEED) as server:
        known = _pipeline_seconds(ctx, params)
        if known is None:
            warm_up(server, database_url, ctx.workdir, params.latency)
            runs = [
                run_history(server, database_url, tasks, params.fetchers, params.latency, ctx.workdir)
                for _ in range(params.repeats)
            ]
            known = min(r.run_seconds for r in runs), f"measured here, best of {params.repeats}"
        pipeline_seconds, pipeline_source = known

        empty_prices(database_url)
        server.reset_stats()
        with stopwatch() as elapsed:
            rows = naive_loop(server.url, sample, libpq_params(database_url))
        naive_sample_seconds = elapsed()
        if rows != len(sample) or count_prices(database_url) != len(sample):
            raise RuntimeError(f"the naive loop stored {rows} of {len(sample)} rows")

    naive_seconds = naive_sample_seconds / len(sample) * params.requests
    speedup = naive_seconds / pipeline_seconds
    result.details.update(
        requests=params.requests,
        latency=params.latency,
        fetchers=params.fetchers,
        sample=len(sample),
        naive_sample_seconds=round(naive_sample_seconds, 3),
        naive_seconds_per_task=round(naive_sample_seconds / len(sample), 5),
        naive_seconds_extrapolated=round(naive_seconds, 2),
        pipeline_seconds=pipeline_seconds,
        pipeline_source=pipeline_source,
        speedup=round(speedup, 2),
    )
    result.add(
        f"naive loop, R={params.requests}",
        naive_seconds,
        "s",
        note=f"extrapolated from {len(sample)} tasks, {naive_sample_seconds / len(sample) * 1000:.0f} ms each",
    )
    result.add(
        f"speed-up of the pipeline (W={params.fetchers})",
        speedup,
        "x",
        note=f"pipeline {pipeline_seconds:.2f}s",
    )
    return result
