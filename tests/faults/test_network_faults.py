"""The price server misbehaves: injected 5xx, rate limiting, a server that goes away mid-run,
and hostile servers that trickle their answers or never give one.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from engine.report import EXIT_FAILURES, EXIT_OK
from tests.faults.conftest import (
    EXCHANGES,
    Watcher,
    check_accounting,
    plan,
    price_pipeline,
    priced,
)
from tests.fixtures.hostile_server import HostileServer, answering, silent, trickle

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

    # Item failures are not fatal: the run ends by itself with a report, and exits 4 to say they happened.
    assert report.exit_code == EXIT_FAILURES, report.reason
    assert report.failures == report.stage("PriceWorker").failed > 0
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert 0 < len(done.stored) < len(priced(tasks, dataset))
    failed = [e for e in done.entries if e["stage"] == "PriceWorker"]
    assert len(failed) >= len(tasks) // 4, "most of the second half should have failed"
    assert all(e["kind"] == "failed" and e["error_type"] == "ConnectionError" for e in failed), failed[:3]
    assert all("Connection refused" in e["message"] or "Max retries" in e["message"] for e in failed), failed[:3]
    assert report.stage("PriceWorker").failed == len(failed)
    assert report.stage("Writer").failed == 0


# --- hostile servers: the run ends by itself, within its documented worst case -------------


def worst_case_run_seconds(
    *,
    items: int,
    fetchers: int,
    requests_per_item: int,
    total_timeout: float,
    server_checks: int,
    stages: int,
    monitor_interval: float,
    fixed: float,
) -> float:
    """The README's bound on a run against a price server that never completes an answer.

    Each request ends within ``total_timeout``; an item makes ``requests_per_item`` of them;
    the fetch stage's threads share the items, so it needs ``ceil(items / fetchers)`` rounds.
    Before the run, ``server_checks`` stages ask the server once each (``prepare_stage``).
    Pills pass one stage per monitor tick. ``fixed`` is the rest: thread start-up, the
    writer's ``prepare_stage`` against a healthy database, the report.
    """
    prepare = server_checks * total_timeout
    fetch = math.ceil(items / fetchers) * requests_per_item * total_timeout
    return prepare + fetch + stages * monitor_interval + fixed


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "behaviour", [trickle(interval=0.05), silent], ids=["headers-trickled-forever", "never-answers"]
)
def test_a_hostile_price_server_dead_letters_every_item_within_the_worst_case_time(
    behaviour, run_pipeline, clean_prices, dataset
):
    symbols, start, end = ["btc", "eth"], "2020-04-01", "2020-04-03"
    tasks = plan(symbols, EXCHANGES, start, end)  # 18 tasks, one request each
    http = {"total_timeout": 0.5, "read_timeout": 5, "connect_timeout": 1, "retries": 3, "backoff": 0.01}
    fetchers = 6
    # The exchange list is answered, so both stages' checks pass and the run starts; every price hangs.
    routes = {"/exchanges": json.dumps(EXCHANGES).encode()}
    with HostileServer(answering(routes, behaviour)) as server:
        document = price_pipeline(
            server_url=server.url, database_url=clean_prices, symbols=symbols, start=start, end=end,
            fetchers=fetchers, http=http,
        )
        began = time.monotonic()
        report = run_pipeline(document)
        elapsed = time.monotonic() - began

    bound = worst_case_run_seconds(
        items=len(tasks), fetchers=fetchers, requests_per_item=1, total_timeout=http["total_timeout"],
        server_checks=2, stages=len(document["workers"]), monitor_interval=document["monitor_interval"], fixed=1.0,
    )
    assert elapsed < bound, f"the run took {elapsed:.1f}s, over its worst case of {bound:.1f}s"
    # Nothing was stored: the run ends by itself, and never as "done".
    assert report.exit_code == EXIT_FAILURES and report.delivered == 0, report.reason
    assert report.errors == {"DeadlineExceeded": len(tasks)}
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert done.stored == set() and done.dead_tasks == len(tasks)
    assert all(e["error_type"] == "DeadlineExceeded" and "took over 0.5s" in e["message"] for e in done.entries)
