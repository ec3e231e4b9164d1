"""Faults mixed at random (Hypothesis): whatever happens, every task is accounted for exactly once.

Each example draws a schedule: a flaky server (5xx, 429, latency), client retries,
items a worker raises on, the server going away, the database going away, one or
two interrupts, and the pipeline's shape (threads, queue and batch sizes). The
run must end by itself, with the expected exit code, and pass the invariant.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from engine.report import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK
from tests.faults import workers
from tests.faults.conftest import (
    FAULT_WORKERS,
    Watcher,
    check_accounting,
    days,
    plan,
    price_pipeline,
)
from tests.fixtures.database import empty_prices

EXCHANGES = ["bitstamp", "coinbase-pro", "kraken"]
START = "2020-04-01"

schedules = st.fixed_dictionaries({
    "symbols": st.integers(2, 8),
    "days": st.integers(2, 6),
    "error_rate": st.sampled_from([0.0, 0.1, 0.3]),
    "rate_limit": st.sampled_from([None, None, 80]),
    "jitter": st.sampled_from([0.0, 0.0, 0.01]),
    "retries": st.integers(0, 4),
    "fail_one_in": st.sampled_from([0, 0, 4, 9]),
    "server_stop_at": st.sampled_from([None, None, None, 0.3, 0.7]),  # fraction of the tasks fetched
    "db_outage": st.sampled_from([None, None, None, None, "short", "long"]),
    "interrupts": st.sampled_from([0, 1, 2, 2]),
    "interrupt_at": st.sampled_from([0.1, 0.4, 0.8]),
    "fetchers": st.integers(1, 6),
    "task_queue": st.integers(1, 30),
    "writers": st.integers(1, 3),
    "batch_size": st.integers(1, 30),
    "seed": st.integers(0, 2**16),
})


@pytest.mark.slow
@pytest.mark.timeout(280)
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same schedules in every CI run; raise max_examples to explore more
    database=None,  # nothing saved in .hypothesis/: a failure prints its schedule, which is enough
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example takes seconds
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schedule=schedules)
def test_mixed_random_faults_keep_the_accounting_exact(
    schedule: dict[str, Any], fault_server, make_executor, database_url, embedded_postgres, dataset
):
    note(f"schedule: {schedule}")
    if schedule["db_outage"] and embedded_postgres.url != database_url:
        schedule["db_outage"] = None  # an external test database cannot be stopped from here
    empty_prices(database_url)
    symbols = dataset.symbols[: schedule["symbols"]]
    end = days(START, "2020-04-30")[schedule["days"] - 1]
    tasks = plan(symbols, EXCHANGES, START, end)
    started = uuid.uuid4().hex
    server = fault_server(seed=schedule["seed"])  # healthy while the stages check it before the run
    document = price_pipeline(
        server_url=server.url, database_url=database_url, symbols=symbols, start=START, end=end,
        fetcher=f"{FAULT_WORKERS}:SignallingFlakyPriceWorker",
        fetcher_params={"fail_one_in": schedule["fail_one_in"], "salt": str(schedule["seed"]), "gate_name": started},
        http={"retries": schedule["retries"], "backoff": 0.01, "backoff_max": 0.02, "max_retry_after": 0.1,
              "connect_timeout": 1, "read_timeout": 2},
        fetchers=schedule["fetchers"], task_queue=schedule["task_queue"], writers=schedule["writers"],
        batch_size=schedule["batch_size"],
        retry_seconds={"short": 30, "long": 0.3}.get(schedule["db_outage"] or "", 5),
    )
    executor = make_executor(document)

    def after(fraction: float) -> int:
        return int(len(tasks) * fraction)

    def outage() -> None:
        embedded_postgres.stop()
        try:
            time.sleep(1.5)
        finally:
            embedded_postgres.start()

    outage_thread = threading.Thread(target=outage, name="db-outage", daemon=True)
    actions = {"server stops": server.stop, "database outage": outage_thread.start,
               "interrupt": executor.interrupt, "interrupt again": executor.interrupt}
    events: list[tuple[int, str]] = []
    if schedule["server_stop_at"] is not None:
        events.append((after(schedule["server_stop_at"]), "server stops"))
    if schedule["db_outage"]:
        events.append((after(0.3), "database outage"))
    if schedule["interrupts"]:
        events.append((after(schedule["interrupt_at"]), "interrupt"))
    if schedule["interrupts"] == 2:
        events.append((after(schedule["interrupt_at"]) + 3, "interrupt again"))
    events.sort()
    fired: list[str] = []
    finished = threading.Event()

    def inject() -> None:
        """Runs once the first task is being fetched: turn the server's faults on, then the rest in turn."""
        base = server.stats.requests
        server.set_faults(error_rate=schedule["error_rate"], rate_limit=schedule["rate_limit"],
                          jitter=schedule["jitter"], sleep=0.002)
        for threshold, name in events:
            while server.stats.requests - base < threshold:
                if finished.is_set():
                    return
                time.sleep(0.005)
            actions[name]()
            fired.append(name)

    watcher = Watcher(lambda: workers.gate(started).is_set() or finished.is_set(), inject, timeout=120)
    watcher.start()
    try:
        report = executor.run()
    finally:
        finished.set()
        watcher.finish()
        server.stop()
        if outage_thread.ident is not None:
            outage_thread.join(60)
        if schedule["db_outage"]:
            embedded_postgres.start()
    note(f"fired: {fired}; report: {report}")
    interrupted = "interrupt" in fired

    # max_failures is 0: any failed or lost item makes a run that ends by itself exit 4.
    expected = EXIT_INTERRUPTED if interrupted else EXIT_FAILURES if report.failures else EXIT_OK
    assert report.exit_code == expected, report.reason
    assert all(s.state != "died" for s in report.stages), report.stages
    done = check_accounting(report, tasks=tasks, dataset=dataset, database_url=database_url)
    if schedule["db_outage"] == "short":
        assert not [e for e in done.entries if e["stage"] == "Writer"], "rows lost to an outage within retry_seconds"
    if not fired and not any(schedule[k] for k in ("error_rate", "rate_limit", "fail_one_in")):
        assert done.entries == []
