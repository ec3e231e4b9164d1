"""What the monitor reports while a run goes: the live status of each stage, and its plain log line."""

from __future__ import annotations

import logging

from engine import StageStatus
from engine.monitor import log_statuses

from .conftest import stage


def test_statuses_carry_queue_maxsize_peak_and_counters(run_pipeline):
    seen: list[list[StageStatus]] = []
    run_pipeline({
        "monitor_interval": 0.05,
        "queues": [{"name": "numbers", "maxsize": 5}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 40]], output_queues="numbers"),
            stage("Odd", "Counting", instances=1, input_queue="numbers"),
        ],
    }, on_status=seen.append)
    final = {s.name: s for s in seen[-1]}
    assert final["Odd"].queue_maxsize == 5 and final["Source"].queue_maxsize == 0
    assert final["Odd"].counters == {"odd": 20}


def test_the_peak_of_a_queue_a_slow_stage_cannot_keep_up_with_is_its_maxsize(run_pipeline):
    seen: list[list[StageStatus]] = []
    run_pipeline({
        "monitor_interval": 0.05,
        "queues": [{"name": "numbers", "maxsize": 5}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 30]], output_queues="numbers"),
            stage("Work", "Slow", params={"delay": 0.01}, input_queue="numbers"),
        ],
    }, on_status=seen.append)
    work = [next(s for s in statuses if s.name == "Work") for statuses in seen]
    assert any(s.queue_depth == s.queue_maxsize == 5 for s in work)  # seen full while running
    assert work[-1].queue_depth == 0 and work[-1].queue_peak == 5  # the peak outlives the full queue
    assert [s.queue_peak for s in work] == sorted(s.queue_peak for s in work)


def _status(**extra) -> StageStatus:
    fields = dict(name="PriceWorker", alive=4, instances=4, queue_depth=10, items_in=43, items_out=43, failed=0,
                  lost=0, rate=12.5, expected=100, state="running", busy=3, queue_maxsize=10)
    fields.update(extra)
    return StageStatus(**fields)


def test_the_plain_log_line_has_done_of_total_in_flight_queue_against_maxsize_and_rate(caplog):
    caplog.set_level(logging.INFO, logger="engine")
    log_statuses([_status(), _status(name="Store", expected=None, queue_depth=3, queue_maxsize=0, failed=2, lost=1)])
    first, second = (r.getMessage() for r in caplog.records)
    assert first == "PriceWorker: done 40/100 (40%), 3 in flight, queue 10/10 full, 12.5/s, 4/4 threads"
    assert second == "Store: done 41, 3 in flight, queue 3, 12.5/s, 3 failed or lost, 4/4 threads"
