"""The price server misbehaves: injected 5xx, rate limiting, and a server that goes away mid-run."""

from __future__ import annotations

import pytest

from engine.report import EXIT_OK
from tests.faults.conftest import (
    Watcher,
    check_accounting,
    plan,
    price_pipeline,
    priced,
)

SYMBOLS = ["btc", "eth", "ltc", "xrp", "ada"]
START, END = "2020-04-01", "2020-04-08"


@pytest.mark.timeout(60)
def test_server_errors_are_retried_until_every_price_is_stored(
    fault_server, run_pipeline, clean_prices, dataset
):
    server = fault_server(error_rate=0.2, seed=7)
    tasks = plan(SYMBOLS, ["bitstamp", "coinbase-pro", "kraken"], START, END)
    report = run_pipeline(price_pipeline(
        server_url=server.url, database_url=clean_prices, symbols=SYMBOLS, start=START, end=END,
        http={"retries": 8, "backoff": 0.01, "backoff_max": 0.05, "read_timeout": 5},
    ))

    assert report.exit_code == EXIT_OK, report.reason
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert server.stats.errors_injected > 10, "the fault was never injected"
    assert done.entries == [], "every 500/503 should have been retried away"
    assert done.stored == set(priced(tasks, dataset))


@pytest.mark.timeout(90)
def test_rate_limited_requests_wait_for_retry_after_and_all_prices_are_stored(
    fault_server, run_pipeline, clean_prices, dataset
):
    # 30 requests per second for 120 tasks: at least four windows, so most fetchers meet a 429.
    # Client backoff is tiny (10 ms, 5 retries = well under a second of patience), so the
    # run can only succeed if the client sleeps for the server's Retry-After (1 s) instead.
    server = fault_server(rate_limit=30)
    symbols = SYMBOLS
    tasks = plan(symbols, ["bitstamp", "coinbase-pro", "kraken"], START, END)
    report = run_pipeline(price_pipeline(
        server_url=server.url, database_url=clean_prices, symbols=symbols, start=START, end=END, fetchers=6,
        http={"retries": 5, "backoff": 0.01, "backoff_max": 0.02, "read_timeout": 5},
    ))

    assert report.exit_code == EXIT_OK, report.reason
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert server.stats.rate_limited > 0, "the rate limit was never hit"
    assert done.entries == []
    assert done.stored == set(priced(tasks, dataset))
    # Honouring Retry-After keeps 429s to a few per fetcher and window; hammering would make hundreds.
    assert server.stats.rate_limited < len(tasks)


@pytest.mark.timeout(60)
def test_server_gone_halfway_fails_the_rest_into_the_dead_letter_file(
    fault_server, run_pipeline, clean_prices, dataset
):
    server = fault_server(sleep=0.005)
    symbols = SYMBOLS + ["doge", "xlm", "eos"]
    tasks = plan(symbols, ["bitstamp", "coinbase-pro", "kraken"], START, END)  # 192 tasks
    half = len(tasks) // 2
    # Stop the server once it has answered half of the price requests.
    watcher = Watcher(lambda: server.stats.requests >= half, server.stop)
    watcher.start()
    try:
        report = run_pipeline(price_pipeline(
            server_url=server.url, database_url=clean_prices, symbols=symbols, start=START, end=END,
            http={"retries": 2, "backoff": 0.01, "backoff_max": 0.02, "connect_timeout": 1, "read_timeout": 2},
        ))
    finally:
        watcher.finish()
    assert watcher.fired.is_set(), "the server was never stopped"

    # Item failures are reported, not fatal: the run ends by itself with a report.
    assert report.exit_code == EXIT_OK, report.reason
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert 0 < len(done.stored) < len(priced(tasks, dataset))
    failed = [e for e in done.entries if e["stage"] == "PriceWorker"]
    assert len(failed) >= len(tasks) // 4, "most of the second half should have failed"
    assert all(e["kind"] == "failed" and e["error_type"] == "ConnectionError" for e in failed), failed[:3]
    assert all("Connection refused" in e["message"] or "Max retries" in e["message"] for e in failed), failed[:3]
    assert report.stage("PriceWorker").failed == len(failed)
    assert report.stage("Writer").failed == 0
