"""Export: rows per second and peak memory of ``python main.py export`` over 1,000,000 stored rows.

The rows (1,000 symbols x 4 exchanges x 250 days, random prices) are loaded into
a table of the benchmark's embedded PostgreSQL (``INSERT ... SELECT
generate_series``, not timed), and into a SQLite file with the same rows. Each
export is the CLI's own ``export`` command (a pipeline file whose writer names
that database and table), run in a fresh child process, ``python -m
bench.export --child``, which reports its own peak resident set (``VmHWM``)
after the imports and at the end: the difference is what streaming the rows
costs, and it must not grow with them. The rate is rows over the child's export
time, best of ``repeats``. Every file is checked to hold every row.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.common import ScenarioResult, at_least, at_most
from bench.context import Context
from bench.services import REPO_ROOT

log = logging.getLogger(__name__)

NAME = "export"
TABLE = "bench_export"
SHIPPED_PIPELINE = REPO_ROOT / "pipelines" / "wiki_crypto_pipeline.yaml"
CHILD_TIMEOUT = 600.0
EXCHANGES = ("binance", "bitstamp", "coinbase-pro", "kraken")


@dataclass(frozen=True)
class Params:
    rows: int  # a multiple of 1,000 (1,000 symbols)
    repeats: int
    formats: tuple[str, ...] = ("csv", "jsonl", "parquet")
    sqlite_formats: tuple[str, ...] = ("parquet",)
    goal_rate: float = 50_000.0  # rows/s, each format from PostgreSQL: a million rows in 20 s
    goal_extra_mb: float = 100.0  # peak RSS above the child's after imports


FULL = Params(rows=1_000_000, repeats=2)
QUICK = Params(rows=100_000, repeats=1)


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    pg_url = ctx.database_url()
    sqlite_url = f"sqlite:///{ctx.workdir / 'export.db'}"
    load_postgres(pg_url, params.rows)
    load_sqlite(ctx.workdir / "export.db", pg_url, params.rows)
    result.details.update(rows=params.rows, repeats=params.repeats, statistic="best of repeats (rate), "
                          "largest of repeats (memory)", runs={})
    for backend, url, formats in (("PostgreSQL", pg_url, params.formats), ("SQLite", sqlite_url, params.sqlite_formats)):
        pipeline = _pipeline_file(ctx.workdir, backend, url)
        for fmt in formats:
            runs = [_export(pipeline, ctx.workdir / f"export.{fmt}", fmt, params.rows) for _ in range(params.repeats)]
            result.details["runs"][f"{backend} {fmt}"] = runs
            rate = params.rows / min(r["seconds"] for r in runs)
            extra = max(r["peak_rss_kib"] - r["peak_rss_after_imports_kib"] for r in runs) / 1024
            peak = max(r["peak_rss_kib"] for r in runs) / 1024
            size = runs[-1]["bytes"] / 2**20
            log.info("%s %s: %.0f rows/s, peak RSS %.0f MB (+%.0f MB), %.0f MB file", backend, fmt, rate, peak,
                     extra, size)
            goal = backend == "PostgreSQL"
            result.add(f"{backend} -> {fmt}, {params.rows:,} rows", rate, "rows/s",
                       goal=f">= {params.goal_rate:,.0f}" if goal else "",
                       passed=at_least(rate, params.goal_rate) if goal else None, note=f"{size:.0f} MB file")
            result.add(f"{backend} -> {fmt}: peak RSS", peak, "MB",
                       goal=f"<= {params.goal_extra_mb:.0f} MB over imports" if goal else "",
                       passed=at_most(extra, params.goal_extra_mb) if goal else None,
                       note=f"{extra:.0f} MB over the {runs[0]['peak_rss_after_imports_kib'] / 1024:.0f} MB "
                            "after imports")
    return result


def load_postgres(url: str, rows: int) -> None:
    """``rows`` distinct prices in :data:`TABLE` (replacing what it held), made by the server itself."""
    from store.schema import price_table

    table = price_table(TABLE)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            table.drop(conn, checkfirst=True)
            table.create(conn)
            conn.execute(text(f"""
                INSERT INTO {TABLE} (symbol, exchange, price_date, open, high, low, close, volume, extracted_time)
                SELECT 'S' || (i / 1000), (ARRAY{list(EXCHANGES)})[1 + (i % 1000) / 250],
                       date '2020-01-01' + (i % 250), p + 1, p + 10, p, p + random() * 10, random() * 1e6, now()
                FROM (SELECT i, 100 + random() * 1000 AS p FROM generate_series(0, :last) AS i) AS g
            """), {"last": rows - 1})
    finally:
        engine.dispose()


def load_sqlite(path: Path, pg_url: str, rows: int) -> None:
    """The same rows, copied from PostgreSQL into a fresh SQLite file (as the writer stores them there)."""
    from store.query import iter_prices
    from store.schema import price_table
    from store.target import PriceStore

    path.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    try:
        with engine.begin() as conn:
            price_table(TABLE).create(conn)
    finally:
        engine.dispose()
    db = sqlite3.connect(path)
    try:
        # The text forms SQLAlchemy's SQLite dialect writes and reads back.
        db.executemany(
            f"INSERT INTO {TABLE} (symbol, exchange, price_date, open, high, low, close, volume, extracted_time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ((r.symbol, r.exchange, r.price_date.isoformat(), r.open, r.high, r.low, r.close, r.volume,
              r.extracted_time.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"))
             for r in iter_prices(PriceStore(pg_url, TABLE))),
        )
        db.commit()
        (count,) = db.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    finally:
        db.close()
    if count != rows:
        raise RuntimeError(f"SQLite copy holds {count} of {rows} rows")


def _pipeline_file(workdir: Path, backend: str, url: str) -> Path:
    """The shipped pipeline, its writer pointed at ``url`` and :data:`TABLE`: what export reads."""
    document = yaml.safe_load(SHIPPED_PIPELINE.read_text())
    writer = next(stage for stage in document["workers"] if stage["class"] == "PostgresWorker")
    writer["params"] = {"database_url": url, "table": TABLE}
    path = workdir / f"export-{backend.lower()}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _export(pipeline: Path, output: Path, fmt: str, rows: int) -> dict:
    command = [sys.executable, "-m", "bench.export", "--child", str(pipeline), str(output)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"export child failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    child["bytes"] = output.stat().st_size
    written = _rows_in(output, fmt)
    if written != rows:
        raise RuntimeError(f"{output} holds {written} of {rows} rows")
    output.unlink()
    return child


def _rows_in(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as file:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
    return lines - (1 if fmt == "csv" else 0)  # the csv header


def _child(pipeline: str, output: str) -> int:
    """Export in this process, then print one JSON line: seconds, peak RSS after imports and at the end (KiB)."""
    from bench.memory_child import peak_rss_kib
    from cli.app import main

    import pyarrow.parquet  # noqa: F401  imported before the baseline, as the export would
    from store import export, query  # noqa: F401

    after_imports = peak_rss_kib()
    started = time.perf_counter()
    code = main(["export", "--pipeline", pipeline, "-o", output])
    seconds = time.perf_counter() - started
    if code != 0:
        return code
    print(json.dumps({"seconds": round(seconds, 3), "peak_rss_after_imports_kib": after_imports,
                      "peak_rss_kib": peak_rss_kib()}))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.export")
    parser.add_argument("--child", nargs=2, metavar=("PIPELINE", "OUTPUT"), required=True)
    sys.exit(_child(*parser.parse_args().child))
