"""Run stats: worker counters read live, queue peaks, grouped counters, and what report.json records."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from typing import Any

import pytest

from engine.counters import percentile, summarize
from engine.stage import _snapshot
from tests.engine.conftest import stage

_RELEASE = threading.Event()  # lets the HoldAfterCounting workers finish


class HoldAfterCounting:
    """Counts each item under new keys, then holds it until the test releases it."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def process(self, item: int) -> Any:
        self.counters["seen"] += 1
        self.counters[f"item.{item}"] += 1
        if not _RELEASE.wait(20):
            raise TimeoutError("never released")
        return [item]


HERE = "tests.engine.test_stats"


@pytest.mark.timeout(30)
def test_counters_of_running_workers_show_in_the_live_status(make_executor):
    _RELEASE.clear()
    seen: list[dict[str, float]] = []

    def on_status(statuses):
        seen.append(statuses[0].counters)
        if statuses[0].counters.get("seen") == 3:
            _RELEASE.set()  # only the live view can have seen all three: no thread has ended yet

    executor = make_executor({
        "name": "live", "monitor_interval": 0.05, "queues": [],
        "workers": [{"name": "Hold", "location": HERE, "class": "HoldAfterCounting", "instances": 3,
                     "input_values": [1, 2, 3]}],
    }, on_status=on_status)
    report = executor.run()
    assert _RELEASE.is_set(), f"the live counters never showed the running workers' counts: {seen[-3:]}"
    assert report.stage("Hold").counters == {"seen": 3, "item.1": 1, "item.2": 1, "item.3": 1}


def test_a_snapshot_of_a_counter_being_written_is_always_whole():
    counters: Counter[str] = Counter()
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            counters[f"key.{n % 5000}"] += 1  # new keys: the dict grows and rehashes while read
            counters["total"] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        previous = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            copy = _snapshot(counters)
            assert copy  # never the {} of a failed copy
            assert copy["total"] >= previous
            previous = copy["total"]
    finally:
        stop.set()
        writer.join()


def test_queue_peak_and_maxsize_are_reported(run_pipeline):
    statuses = []
    report = run_pipeline({
        "name": "peak", "monitor_interval": 0.05, "queues": [{"name": "q", "maxsize": 7}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 40]], output_queues="q"),
            stage("Work", "Slow", params={"delay": 0.01}, input_queue="q"),
        ],
    }, on_status=statuses.append)
    assert report.stage("Work").queue_peak == 7
    work = [s for batch in statuses for s in batch if s.name == "Work"]
    assert {s.queue_maxsize for s in work} == {7} and {s.queue_name for s in work} == {"q"}
    assert max(s.queue_peak for s in work) == 7


def test_report_dict_records_times_pipeline_config_hash_version_and_totals(make_executor, tmp_path):
    document = {
        "name": "recorded", "queues": [{"name": "q"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 10]], output_queues="q"),
            stage("Count", "Counting", input_queue="q"),
        ],
    }
    before = dt.datetime.now(dt.timezone.utc)
    executor = make_executor(document)
    data = executor.run().to_dict()
    started = dt.datetime.fromisoformat(data["started_at"])
    finished = dt.datetime.fromisoformat(data["finished_at"])
    assert started.utcoffset() == dt.timedelta(0) and before <= started <= finished
    assert data["pipeline"] == {"name": "recorded", "file": str(executor.path)}
    assert data["version"]
    assert data["items"] == {"in": 1, "out": 5, "failed": 0, "no_data": 0, "lost": 0}
    assert data["stages"][1]["counters"] == {"odd": 5}
    same = make_executor(document).run().to_dict()["config_sha256"]
    document["workers"][1]["instances"] = 2
    other = make_executor(document).run().to_dict()["config_sha256"]
    assert len(same) == 64 and same == data["config_sha256"] != other


def test_dotted_counters_are_grouped_and_histograms_give_percentiles():
    counters = {"no_data": 2, "http.requests": 12, "http.retries": 3, "http.retries.5xx": 2, "http.retries.429": 1,
                "http.status.200": 9, "http.status.503": 3, "http.bytes": 10,
                "http.latency.le.0.001": 90, "http.latency.le.0.002": 9, "http.latency.le.+Inf": 1,
                "http.latency.sum": 0.5}
    stats = summarize(counters)
    assert stats["http.retries"] == {"total": 3, "5xx": 2, "429": 1}
    assert stats["http.status"] == {"200": 9, "503": 3}
    assert stats["http.requests"] == 12 and stats["http.bytes"] == 10 and "no_data" not in stats
    assert stats["http.latency"] == {"count": 100, "sum": 0.5, "p50": 0.001, "p95": 0.002, "p99": 0.002}
    assert percentile({0.001: 98, float("inf"): 2}, 99) is None  # beyond the last bound: unknown
    assert percentile({}, 50) is None
