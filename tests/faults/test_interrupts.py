"""Ctrl+C: on the real command line (``python main.py`` in a child process, SIGINT once or twice),
and through ``PipelineExecutor.interrupt()`` while the run is still starting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
    REPO,
    Watcher,
    check_accounting,
    plan,
    price_pipeline,
    wait_until,
    write_pipeline,
)

MAIN = REPO / "main.py"
SYMBOLS = ["btc", "eth", "ltc", "xrp", "ada", "doge", "xlm", "eos", "bch", "bnb"]
START, END = "2020-04-01", "2020-04-10"
EXCHANGES = ["bitstamp", "coinbase-pro", "kraken"]


class Run:
    """``python main.py --pipeline PATH --no-progress`` in ``cwd``, with the test server and database."""

    def __init__(self, pipeline: Path, cwd: Path, server_url: str, database_url: str) -> None:
        env = dict(os.environ, PRICE_SERVER_URL=server_url, DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
        self.cwd = cwd
        self.process = subprocess.Popen(
            [sys.executable, str(MAIN), "--pipeline", str(pipeline), "--no-progress", "--log-level", "INFO"],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.output = ""

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        try:
            self.output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output, _ = self.process.communicate()
            pytest.fail(f"main.py did not end within {timeout}s after the interrupt:\n{self.output[-3000:]}")
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()

    def report(self) -> dict[str, Any]:
        (path,) = self.cwd.glob("runs/*/report.json")
        return json.loads(path.read_text())


@pytest.fixture
def main_run(tmp_path: Path):
    runs: list[Run] = []

    def start(document: dict[str, Any], server_url: str, database_url: str) -> Run:
        cwd = tmp_path / f"cwd{len(runs)}"
        cwd.mkdir()
        runs.append(Run(write_pipeline(tmp_path, document), cwd, server_url, database_url))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def _stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


def _check(run: Run, tasks, dataset, database_url):
    """The invariant, from what the child left behind: report.json, its dead-letter file and the table."""
    report = run.report()
    entries = read_dead_letters(Path(report["dead_letter_path"]) if Path(report["dead_letter_path"]).is_absolute()
                                else run.cwd / report["dead_letter_path"])
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
def test_one_sigint_stops_the_sources_lets_queued_items_finish_and_exits_130(
    fault_server, main_run, clean_prices, dataset, signum
):
    server = fault_server(sleep=0.05)
    tasks = plan(SYMBOLS, EXCHANGES, START, END)  # 300 tasks, ~4 s at 4 x 20 requests/s
    run = main_run(_document(server.url, clean_prices), server.url, clean_prices)
    try:
        assert wait_until(lambda: server.stats.requests >= 40 or run.process.poll() is not None, 30)
        assert run.process.poll() is None, f"main.py ended before the interrupt:\n{run.wait()}{run.output}"
        run.interrupt(signum)
        code = run.wait()
    finally:
        run.kill()

    assert code == EXIT_INTERRUPTED, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    report, done = _check(run, tasks, dataset, clean_prices)
    assert report["interrupted"] is True
    planner, fetcher, writer = (_stage(report, n) for n in ("Planner", "PriceWorker", "Writer"))
    # The source stopped: the symbols it had not started are lost, with the reason.
    assert planner["state"] == "stopped"
    lost_symbols = [e for e in done.entries if e["stage"] == "Planner"]
    assert lost_symbols and all(e["kind"] == "lost" and "interrupted" in e["message"] for e in lost_symbols)
    assert planner["items_in"] + len(lost_symbols) == len(SYMBOLS)
    # Every task the source had planned was fetched (nothing queued was dropped)...
    assert fetcher["lost"] == 0 and fetcher["items_in"] == planner["items_out"]
    # ...and every fetched price reached the table (the writer flushed).
    assert writer["lost"] == writer["failed"] == 0
    assert len(done.stored) == fetcher["items_out"] == writer["items_in"] > 0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_two_sigints_stop_fast_exit_130_and_still_store_what_was_fetched(
    fault_server, main_run, clean_prices, dataset
):
    server = fault_server(sleep=0.05)
    tasks = plan(SYMBOLS, EXCHANGES, START, END)
    run = main_run(_document(server.url, clean_prices), server.url, clean_prices)
    try:
        assert wait_until(lambda: server.stats.requests >= 40 or run.process.poll() is not None, 30)
        assert run.process.poll() is None, f"main.py ended before the interrupt:\n{run.wait()}{run.output}"
        run.interrupt()
        seen = server.stats.requests
        # The second Ctrl+C comes while the queued tasks are still being fetched.
        assert wait_until(lambda: server.stats.requests >= seen + 8, 10)
        run.interrupt()
        code = run.wait()
    finally:
        run.kill()

    assert code == EXIT_INTERRUPTED, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-3000:]
    report, done = _check(run, tasks, dataset, clean_prices)
    planner, fetcher, writer = (_stage(report, n) for n in ("Planner", "PriceWorker", "Writer"))
    assert planner["state"] == fetcher["state"] == "stopped"
    # Stopped fast: tasks still queued for the fetchers were not fetched but dead-lettered as lost.
    assert fetcher["lost"] > 0
    assert all(e["kind"] == "lost" for e in done.entries if e["stage"] == "PriceWorker")
    # Every price already fetched was stored.
    assert writer["lost"] == writer["failed"] == 0
    assert len(done.stored) == fetcher["items_out"] == writer["items_in"] > 0


@pytest.mark.timeout(60)
def test_interrupt_while_the_run_is_starting_stops_the_sources(fault_server, make_executor, clean_prices, dataset):
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
    # Ctrl+C came before any symbol was taken: the source takes none, each is lost with the reason.
    assert report.stage("Planner").items_in == 0, [(s.name, s.items_in, s.state) for s in report.stages]
    assert report.stage("Planner").lost == len(symbols)
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
