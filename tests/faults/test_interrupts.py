"""Ctrl+C: on the real command line (``python main.py`` in a child process, SIGINT once or twice),
and through ``PipelineExecutor.interrupt()`` while the run is still starting."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.dead_letter import read_dead_letters
from engine.report import EXIT_INTERRUPTED
from tests.faults import workers
from tests.faults.conftest import (
    FAULT_WORKERS,
    Watcher,
    check_accounting,
    plan,
    price_pipeline,
    wait_until,
    write_pipeline,
)
from tests.faults.main_process import Run, main_process  # noqa: F401 - main_process is a fixture

SYMBOLS = ["btc", "eth", "ltc", "xrp", "ada", "doge", "xlm", "eos", "bch", "bnb"]
START, END = "2020-04-01", "2020-04-10"
EXCHANGES = ["bitstamp", "coinbase-pro", "kraken"]


@pytest.fixture
def main_run(tmp_path: Path, main_process):
    def start(document: dict[str, Any], server_url: str, database_url: str) -> Run:
        return main_process(["--pipeline", str(write_pipeline(tmp_path, document))], server_url, database_url)

    return start


def _stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


def _check(run: Run, tasks, dataset, database_url):
    """The invariant, from what the child left behind: report.json, its dead-letter file and the table."""
    report = run.report()
    entries = read_dead_letters(run.dead_letter_path())
    assert len(entries) == report["dead_letters"]
    assert sum(s["failed"] + s["lost"] for s in report["stages"]) == len(entries)
    for upstream, downstream in zip(report["stages"], report["stages"][1:]):
        assert downstream["items_in"] + downstream["lost"] == upstream["items_out"], (upstream, downstream)
    no_data = _stage(report, "PriceWorker")["counters"].get("no_data", 0)
    done = check_accounting(None, tasks=tasks, dataset=dataset, database_url=database_url,
                            entries=entries, no_data=no_data)
    return report, done


def _document(server_url: str, database_url: str) -> dict[str, Any]:
    return price_pipeline(
        server_url=server_url, database_url=database_url, symbols=SYMBOLS, start=START, end=END,
        fetchers=4, task_queue=20, batch_size=25, batch_timeout=0.5,
        http={"retries": 3, "backoff": 0.01, "read_timeout": 5},
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_sigint_starts_no_new_item_stores_what_was_fetched_and_exits_130_in_seconds(
    fault_server, main_run, clean_prices, dataset, signum
):
    server = fault_server(sleep=0.05)
    tasks = plan(SYMBOLS, EXCHANGES, START, END)  # 300 tasks, ~4 s at 4 x 20 requests/s
    run = main_run(_document(server.url, clean_prices), server.url, clean_prices)
    try:
        assert wait_until(lambda: server.stats.requests >= 40 or run.process.poll() is not None, 30)
        assert run.process.poll() is None, f"main.py ended before the interrupt:\n{run.wait()}{run.output}"
        run.interrupt(signum)
        interrupted_at = time.monotonic()
        code = run.wait()
        ended_in = time.monotonic() - interrupted_at
    finally:
        run.kill()

    assert code == EXIT_INTERRUPTED, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    assert "interrupted: no new items are started;" in run.output, run.output[-3000:]
    assert ended_in < 10, f"main.py went on for {ended_in:.1f}s after the interrupt"
    report, done = _check(run, tasks, dataset, clean_prices)
    assert report["interrupted"] is True
    planner, fetcher, writer = (_stage(report, n) for n in ("Planner", "PriceWorker", "Writer"))
    # Intake stopped everywhere: the symbols and the tasks not started are dead-lettered as interrupted.
    assert planner["state"] == fetcher["state"] == "stopped"
    assert fetcher["lost"] > 0 and fetcher["items_in"] + fetcher["lost"] == planner["items_out"]
    not_started = [e for e in done.entries if e["stage"] in ("Planner", "PriceWorker")]
    assert not_started and all(e["kind"] == "interrupted" and "interrupted" in e["message"] for e in not_started)
    # Every fetched price reached the table (the writer drained its queue and flushed).
    assert writer["state"] == "done" and writer["lost"] == writer["failed"] == 0
    assert len(done.stored) == fetcher["items_out"] == writer["items_in"] > 0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_two_sigints_stop_the_writers_after_the_batch_in_hand_and_exit_130(
    fault_server, main_run, clean_prices, dataset
):
    server = fault_server(sleep=0.05)
    tasks = plan(SYMBOLS, EXCHANGES, START, END)
    document = _document(server.url, clean_prices)
    # One slow writer (5 rows per 0.2 s) behind 4 fetchers (80 rows/s): a backlog of fetched rows builds up.
    document["workers"][2].update({"location": FAULT_WORKERS, "class": "SlowWriter", "instances": 1,
                                   "batch_size": 5})
    document["workers"][2]["params"].update({"batch_delay": 0.2, "batch_size": 5})
    run = main_run(document, server.url, clean_prices)
    try:
        assert wait_until(lambda: server.stats.requests >= 60 or run.process.poll() is not None, 30)
        assert run.process.poll() is None, f"main.py ended before the interrupt:\n{run.wait()}{run.output}"
        run.interrupt()
        time.sleep(0.3)  # signals sent back to back coalesce
        run.interrupt()
        interrupted_at = time.monotonic()
        code = run.wait()
        ended_in = time.monotonic() - interrupted_at
    finally:
        run.kill()

    assert code == EXIT_INTERRUPTED, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    assert "interrupted again: Writer will stop after the batch in hand;" in run.output, run.output[-3000:]
    assert ended_in < 10, f"main.py went on for {ended_in:.1f}s after the second interrupt"
    report, done = _check(run, tasks, dataset, clean_prices)
    planner, fetcher, writer = (_stage(report, n) for n in ("Planner", "PriceWorker", "Writer"))
    assert planner["state"] == fetcher["state"] == writer["state"] == "stopped"
    # Rows still queued for the writer are dead-lettered as interrupted (replayable); the rest are stored.
    assert writer["lost"] > 0 and writer["items_in"] + writer["lost"] == fetcher["items_out"]
    assert {e["kind"] for e in done.entries if e["stage"] == "Writer"} == {"interrupted"}
    assert len(done.stored) == writer["items_in"] - writer["failed"]


@pytest.mark.timeout(60)
def test_interrupt_while_the_run_is_starting_takes_no_item(fault_server, make_executor, clean_prices, dataset):
    server = fault_server()
    symbols = ["btc", "eth", "ltc"]
    tasks = plan(symbols, EXCHANGES, START, "2020-04-03")
    document = price_pipeline(
        server_url=server.url, database_url=clean_prices, symbols=symbols, start=START, end="2020-04-03",
    )
    name = uuid.uuid4().hex
    document["workers"][0].update({"location": FAULT_WORKERS, "class": "SlowStartPlanner"})
    document["workers"][0]["params"].update({"gate_name": name, "prepare_delay": 0.5})
    executor = make_executor(document)

    watcher = Watcher(workers.gate(name).is_set, executor.interrupt)  # Ctrl+C during start-up
    watcher.start()
    try:
        report = executor.run()
    finally:
        watcher.finish()

    assert report.exit_code == EXIT_INTERRUPTED
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    # Ctrl+C came before any symbol was taken: the source takes none, each is dead-lettered as interrupted.
    assert report.stage("Planner").items_in == 0, [(s.name, s.items_in, s.state) for s in report.stages]
    assert report.stage("Planner").lost == len(symbols)
    assert done.kinds() == {"interrupted": len(symbols)}
    assert done.stored == set()


@pytest.mark.timeout(60)
def test_first_interrupt_stops_a_source_of_many_cheap_items_promptly(
    fault_server, make_executor, clean_prices, dataset, monkeypatch
):
    import engine.stage

    # As on a fast machine: every item counts as cheap, so threads take their items in chunks.
    monkeypatch.setattr(engine.stage, "_CHEAP_ITEM_SECONDS", 10.0, raising=False)
    server = fault_server(sleep=0.02)
    symbols = dataset.symbols[:100]
    tasks = plan(symbols, EXCHANGES, START, START)  # 3 tasks a symbol
    name = uuid.uuid4().hex
    document = price_pipeline(
        server_url=server.url, database_url=clean_prices, symbols=symbols, start=START, end=START,
        fetchers=2, task_queue=10,
    )
    document["workers"][0].update({"location": FAULT_WORKERS, "class": "RecordingPlanner"})
    document["workers"][0]["params"]["log_name"] = name
    executor = make_executor(document)
    interrupted_at: list[float] = []

    def ctrl_c() -> None:
        interrupted_at.append(time.monotonic())
        executor.interrupt()

    watcher = Watcher(lambda: server.stats.requests >= 20, ctrl_c)
    watcher.start()
    try:
        report = executor.run()
    finally:
        watcher.finish()

    assert interrupted_at, "the run ended before the interrupt"
    assert report.exit_code == EXIT_INTERRUPTED
    check_accounting(report, tasks=tasks, dataset=dataset, database_url=clean_prices)
    planner = report.stage("Planner")
    assert planner.items_in + planner.lost == len(symbols)
    # The source ends after the symbol in hand: at most one start can race with the interrupt.
    late = [symbol for started, symbol in workers.STARTED[name] if started > interrupted_at[0]]
    assert len(late) <= 1, f"the source started {len(late)} more symbols after the interrupt: {late[:10]}..."
    assert planner.lost >= len(symbols) - len(workers.STARTED[name])


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_price_stage_dying_under_main_py_exits_1_naming_the_stage(fault_server, main_run, clean_prices, dataset):
    server = fault_server()
    symbols = dataset.symbols[:40]
    document = price_pipeline(
        server_url=server.url, database_url=clean_prices, symbols=symbols, start="2020-03-01", end="2020-04-30",
        fetcher=f"{FAULT_WORKERS}:DyingPriceWorker", fetchers=3, task_queue=4, max_restarts=2,
    )
    run = main_run(document, server.url, clean_prices)
    try:
        code = run.wait(60)
    finally:
        run.kill()

    assert code == 1, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    assert "stage PriceWorker died: SystemExit" in run.output, run.output[-3000:]
    report, done = _check(run, plan(symbols, EXCHANGES, "2020-03-01", "2020-04-30"), dataset, clean_prices)
    assert _stage(report, "PriceWorker")["state"] == "died"
    assert _stage(report, "Planner")["state"] == "stopped"
    assert done.stored == set()
