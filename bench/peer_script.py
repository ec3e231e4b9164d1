"""The peer to beat: the scale workload as the obvious ThreadPoolExecutor + requests script.

    python bench/peer_script.py --server URL --dsn DSN --threads W

What a competent user writes without a framework: the symbols, exchanges and
newest day asked once; a ``ThreadPoolExecutor`` of W threads, each with its own
``requests.Session`` (kept in a ``threading.local``); one job per symbol that
GETs its price on every exchange in turn (the pipeline's item shape, so both
have the same latency ideal); the main thread writes the rows into ``prices``
in batches of 500 (psycopg2 ``execute_values``, upsert, one commit per batch).

It prints one JSON line: ``seconds`` and ``cpu_seconds`` (this process, all
threads) from the first request to the last commit (imports excluded),
``requests`` (price requests) and ``rows``. :mod:`bench.scale` runs it side by
side with the pipeline.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import psycopg2.extras
import requests

BATCH = 500
UPSERT = """
    INSERT INTO prices (symbol, exchange, price_date, open, high, low, close, volume, extracted_time)
    VALUES %s
    ON CONFLICT (symbol, exchange, price_date) DO UPDATE SET
        open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, extracted_time = excluded.extracted_time
"""
ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, now())"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="price server base URL")
    parser.add_argument("--dsn", required=True, help="libpq connection string of the database")
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()

    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def get(url: str) -> object:
        response = session().get(url, timeout=30)
        response.raise_for_status()
        return response.json()

    def fetch_symbol(symbol: str) -> list[tuple]:
        rows = []
        for exchange in exchanges:
            price = get(f"{args.server}/price/{exchange}/{symbol}/{day}")
            if price is not None:
                rows.append((symbol.upper(), exchange, day, price["open"], price["high"], price["low"],
                             price["close"], price["volume"]))  # fmt: skip
        return rows

    def write(rows: list[tuple]) -> None:
        with connection.cursor() as cursor:
            psycopg2.extras.execute_values(cursor, UPSERT, rows, template=ROW, page_size=BATCH)
        connection.commit()

    started, cpu_started = time.perf_counter(), _cpu_seconds()
    connection = psycopg2.connect(args.dsn)
    symbols = get(f"{args.server}/symbols")
    exchanges = get(f"{args.server}/exchanges")
    day = get(f"{args.server}/days")["last"]
    written, batch = 0, []
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for rows in pool.map(fetch_symbol, symbols):
            batch.extend(rows)
            if len(batch) >= BATCH:
                write(batch)
                written, batch = written + len(batch), []
    if batch:
        write(batch)
        written += len(batch)
    connection.close()
    print(json.dumps({
        "seconds": time.perf_counter() - started,
        "cpu_seconds": _cpu_seconds() - cpu_started,
        "requests": len(symbols) * len(exchanges),
        "rows": written,
    }))  # fmt: skip


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
