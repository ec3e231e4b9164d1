"""Faults on a single-node Ray runtime: processes killed, workers raising, a whole stage dying."""

from __future__ import annotations

import signal
import threading
import time

import psutil
import pytest

from engine.dead_letter import read_dead_letters
from engine.report import EXIT_FAILURES, EXIT_STAGE_DIED
from tests.ray.conftest import chain, requires_ray, run_with_fault
from tests.ray.workers import written

pytestmark = [pytest.mark.slow, requires_ray]


def _actor_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any("StageActor" in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def test_killing_every_worker_process_mid_run_loses_nothing_and_stores_no_row_twice(
    run_on_ray, fault_server, dataset, clean_prices
):
    killed: list[int] = []

    def kill_all() -> None:  # SIGKILL, as the OOM killer would: no clean-up runs
        for process in _actor_processes():
            process.send_signal(signal.SIGKILL)
            killed.append(process.pid)

    report, _ = run_with_fault(run_on_ray, fault_server, dataset, clean_prices, kill_all)
    assert killed and report.executor == "ray"
    assert sum(s.restarts for s in report.stages) >= 1


def test_a_worker_that_raises_dead_letters_exactly_that_item(run_on_ray, tmp_path):
    sink = tmp_path / "sink.txt"
    report = run_on_ray(chain(sink, count=100, fetch={"fail_on": 42}))
    entries = read_dead_letters(report.dead_letter_path)
    assert [(e["stage"], e["kind"], e["item"], e["error_type"], e["message"]) for e in entries] == [
        ("Fetch", "failed", 42, "ValueError", "bad item 42")
    ]
    assert report.exit_code == EXIT_FAILURES and report.failures == 1
    assert sorted(written(sink)) == [n for n in range(0, 100, 2) if n != 42]
    fetch = report.stage("Fetch")
    assert (fetch.items_in, fetch.items_out, fetch.failed, fetch.errors) == (100, 49, 1, {"ValueError": 1})
    assert fetch.counters == {"fetched": 99, "no_data": 50}


@pytest.mark.timeout(120)  # a hang fails here, not after the suite's 300 s
def test_a_stage_whose_actors_all_die_ends_with_exit_1_and_dead_letters(run_on_ray, tmp_path):
    sink = tmp_path / "sink.txt"
    started = time.monotonic()
    report = run_on_ray(chain(sink, count=60, fetch={"die_always": True}, instances=2, max_restarts=1))
    assert time.monotonic() - started < 90  # ends by itself: never a hang
    assert report.exit_code == EXIT_STAGE_DIED
    assert report.reason.startswith("stage Fetch died:") and "every actor" in report.reason
    fetch = report.stage("Fetch")
    assert fetch.state == "died"
    entries = read_dead_letters(report.dead_letter_path)
    # Every number is in the dead-letter file once: failed with a dying process, or never processed.
    assert sorted(e["item"] for e in entries) == list(range(60))
    assert {e["kind"] for e in entries} <= {"failed", "lost"} and all(e["stage"] == "Fetch" for e in entries)
    assert fetch.failed + fetch.lost == 60 and fetch.failed >= 1
    assert written(sink) == []


def test_params_ray_cannot_send_to_an_actor_stop_the_run_before_it_starts(ray_cluster, tmp_path):
    from engine import PipelineConfig, QueueConfig, RunStartError, StageConfig
    from ray_executor import RayPipelineExecutor
    from tests.ray import workers

    config = PipelineConfig(
        queues={"Items": QueueConfig("Items")},
        stages=(StageConfig("Numbers", workers.Numbers, input_values=(3,), output_queues=("Items",)),
                StageConfig("Fetch", workers.Fetch, input_queue="Items", params={"delay": threading.Lock()})),
    )
    with pytest.raises(RunStartError, match=r"^the stages cannot start on Ray: .*lock"):
        RayPipelineExecutor(config, run_dir=tmp_path / "runs").run()
    assert list((tmp_path / "runs").iterdir()) == []  # no run directory left behind
