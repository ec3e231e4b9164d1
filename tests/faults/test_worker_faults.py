"""Workers that fail: on some items (dead-lettered, the rest flows), or every thread of a stage dies."""

from __future__ import annotations

import pytest

from engine.report import EXIT_FAILURES, EXIT_STAGE_DIED
from tests.faults.conftest import (
    FAULT_WORKERS,
    check_accounting,
    plan,
    price_pipeline,
    priced,
)
from tests.faults.workers import picked

SYMBOLS = ["btc", "eth", "ltc", "xrp", "ada", "doge"]
START, END = "2020-04-01", "2020-04-06"
EXCHANGES = ["bitstamp", "coinbase-pro", "kraken"]


@pytest.mark.timeout(60)
def test_items_a_worker_raises_on_are_dead_lettered_and_the_others_flow(
    fault_server, run_pipeline, clean_prices, dataset
):
    server = fault_server()
    tasks = plan(SYMBOLS, EXCHANGES, START, END)
    chosen = {key for key in tasks if picked({"symbol": key[0], "exchange": key[1], "date": key[2]}, 7)}
    chosen |= {key for key in tasks if key[0] == "ltc"}
    report = run_pipeline(price_pipeline(
        server_url=server.url, database_url=clean_prices, symbols=SYMBOLS, start=START, end=END,
        fetcher=f"{FAULT_WORKERS}:FlakyPriceWorker", fetcher_params={"fail_one_in": 7, "fail_symbols": ["LTC"]},
    ))

    assert report.exit_code == EXIT_FAILURES, report.reason  # item failures are not fatal, but not "done" either
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert set(done.dead) == chosen
    for key in chosen:
        (entry,) = done.dead[key]
        assert (entry["stage"], entry["kind"], entry["error_type"]) == ("PriceWorker", "failed", "RuntimeError")
        assert entry["message"] == f"injected failure on {'/'.join(key)}"
    assert done.stored == set(priced(tasks, dataset)) - chosen
    stage = report.stage("PriceWorker")
    assert (stage.state, stage.failed, stage.restarts) == ("done", len(chosen), 0)
    assert stage.items_in == len(tasks)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("fetcher", "params", "why"),
    [
        (f"{FAULT_WORKERS}:DyingPriceWorker", {}, "SystemExit: price thread gave up"),
        # Passes the stage check (the server answers) but every thread then fails to build.
        (f"{FAULT_WORKERS}:UnbuildablePriceWorker", {}, "RuntimeError: cannot build a PriceWorker"),
    ],
    ids=["dies-on-first-item", "cannot-build"],
)
def test_price_stage_dying_ends_the_run_with_exit_1_and_does_not_hang_the_producer(
    fault_server, run_pipeline, clean_prices, dataset, fetcher, params, why
):
    server = fault_server()
    symbols = [s for s in dataset.symbols[:40]]
    start, end = "2020-03-01", "2020-04-30"
    tasks = plan(symbols, EXCHANGES, start, end)  # 7320 tasks behind a queue of 4: the planner must block
    report = run_pipeline(price_pipeline(
        server_url=server.url, database_url=clean_prices, symbols=symbols, start=start, end=end,
        fetcher=fetcher, fetcher_params=params, fetchers=3, task_queue=4, max_restarts=2,
    ))

    assert report.exit_code == EXIT_STAGE_DIED
    assert "PriceWorker" in report.reason and why in report.reason, report.reason
    stage = report.stage("PriceWorker")
    assert (stage.state, stage.restarts) == ("died", 2)
    # The planner was stopped, not left blocked on the full queue in front of the dead stage.
    assert report.stage("Planner").state == "stopped"
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    assert done.stored == set()
    assert done.kinds()["lost"] > 0


@pytest.mark.timeout(60)
def test_writer_dying_after_some_batches_stops_the_run_and_accounts_for_every_task(
    fault_server, run_pipeline, clean_prices, dataset
):
    server = fault_server(sleep=0.002)
    symbols = SYMBOLS + ["xlm", "eos", "bch", "bnb"]
    start, end = "2020-03-20", "2020-04-10"
    tasks = plan(symbols, EXCHANGES, start, end)  # 660 tasks
    document = price_pipeline(
        server_url=server.url, database_url=clean_prices, symbols=symbols, start=start, end=end,
        writers=2, batch_size=10, record_queue=20,
    )
    document["workers"][2].update({"location": FAULT_WORKERS, "class": "DyingWriter"})
    document["workers"][2]["params"]["good_batches"] = 2
    report = run_pipeline(document)

    assert report.exit_code == EXIT_STAGE_DIED
    assert report.reason.startswith("stage Writer died: SystemExit: writer thread gave up"), report.reason
    assert report.stage("Writer").state == "died"
    assert report.stage("PriceWorker").state == report.stage("Planner").state == "stopped"
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    threads = 2 + report.stage("Writer").restarts
    assert 0 < len(done.stored) <= threads * 2 * 10  # at most two good batches per writer thread
    assert done.kinds()["lost"] > 0 and done.kinds()["failed"] > 0
