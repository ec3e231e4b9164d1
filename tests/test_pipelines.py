"""Every shipped pipeline loads; every one that uses the bundled server runs end to end through main.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from engine import load_pipeline

REPO = Path(__file__).resolve().parents[1]
PIPELINES = sorted((REPO / "pipelines").glob("*.yaml"))
LOCAL = [p for p in PIPELINES if "PRICE_SERVER_URL" in p.read_text()]


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_shipped_pipeline_loads_and_its_classes_import(path):
    config = load_pipeline(path, env={})
    assert config.stages
    for stage in config.stages:
        method = "process" if stage.batch_size is None else "process_batch"
        assert callable(getattr(stage.worker_class, method, None)), (stage.name, method)


def test_the_default_pipeline_is_the_one_in_env_local():
    env_local = (REPO / ".env.local").read_text()
    assert "PIPELINE_LOCATION=pipelines/wiki_crypto_pipeline.yaml" in env_local.splitlines()
    assert (REPO / "pipelines/wiki_crypto_pipeline.yaml").exists()


def run_main(tmp_path: Path, server_url: str, database_url: str, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run main.py as a user would (its .env.local in force), pointing at a test server and database."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_LOCATION", "POSTGRES_HOST")}
    env.update(PRICE_SERVER_URL=server_url, DATABASE_URL=database_url)
    runs = tmp_path / f"runs-{len(list(tmp_path.glob('runs-*')))}"
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--no-progress", "--run-dir", str(runs), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    reports = list(runs.glob("*/report.json"))
    assert len(reports) == 1, result.stderr
    return result, json.loads(reports[0].read_text())


def stored(database_url: str) -> list[tuple[str, str, dt.date, float]]:
    with create_engine(database_url).connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT symbol, exchange, price_date, close FROM prices"))]


def counters(report: dict[str, Any], stage: str) -> dict[str, int]:
    return next(s for s in report["stages"] if s["name"] == stage)["counters"]


@pytest.mark.slow
def test_default_pipeline_end_to_end(tmp_path, start_price_server, clean_prices):
    server = start_price_server(sleep=0.002)
    dataset = server.dataset
    day = dataset.days.last
    exchanges = ["bitstamp", "kraken", "coinbase-pro"]  # as in wiki_crypto_pipeline.yaml
    expected = {
        (symbol.upper(), exchange, day): dataset.price(exchange, symbol, day)["close"]
        for symbol in dataset.symbols
        for exchange in exchanges
        if dataset.price(exchange, symbol, day) is not None
    }
    gaps = len(dataset.symbols) * len(exchanges) - len(expected)
    assert gaps > 0, "the synthetic data has missing days, so 'no data' answers are exercised"

    result, report = run_main(tmp_path, server.url, clean_prices)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = stored(clean_prices)
    assert len(rows) == len(expected)  # one row per (symbol, exchange) that has data
    assert {(s, e, d): c for s, e, d, c in rows} == expected
    assert counters(report, "PriceWorker")["no_data"] == gaps
    assert counters(report, "PostgresWorker")["rows_written"] == len(expected)

    again, _ = run_main(tmp_path, server.url, clean_prices)
    assert again.returncode == 0, again.stderr
    assert len(stored(clean_prices)) == len(expected)  # a second run upserts the same rows


@pytest.mark.slow
def test_history_pipeline_end_to_end(tmp_path, price_server, clean_prices):
    path = REPO / "pipelines/crypto_history_pipeline.yaml"
    result, report = run_main(tmp_path, price_server.url, clean_prices, "--pipeline", str(path))
    assert result.returncode == 0, result.stderr
    tasks = 40 * 3 * 30  # limit 40 symbols x 3 exchanges x April 2020
    no_data = counters(report, "PriceWorker").get("no_data", 0)
    rows = stored(clean_prices)
    assert len(rows) + no_data == tasks
    assert len({(s, e, d) for s, e, d, _ in rows}) == len(rows)
    dataset = price_server.dataset
    for symbol, exchange, day, close in rows[:: max(1, len(rows) // 50)]:
        assert dataset.price(exchange, symbol, day)["close"] == close


@pytest.mark.slow
def test_quote_page_pipeline_end_to_end(tmp_path, price_server, clean_prices):
    path = REPO / "pipelines/quote_page_pipeline.yaml"
    result, report = run_main(tmp_path, price_server.url, clean_prices, "--pipeline", str(path))
    assert result.returncode == 0, result.stderr
    rows = stored(clean_prices)
    quoted = {s.upper(): price_server.dataset.quote(s) for s in price_server.dataset.symbols}
    assert len(rows) == sum(1 for q in quoted.values() if q is not None)
    for symbol, exchange, _, close in rows:
        assert exchange == "quote"
        assert close == pytest.approx(quoted[symbol]["price"])
