"""Thousands of threads: they start, take their pills and end, and every item is accounted for."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.channel import Channel
from engine.dead_letter import read_dead_letters
from engine.report import EXIT_OK

from . import workers
from .conftest import stage


def _count_pills(monkeypatch) -> list[int]:
    """Spy on the real Channel: how many pills each put_sentinels call put."""
    counts: list[int] = []
    put_sentinels = Channel.put_sentinels

    def counted(self, sentinel, count):
        counts.append(count)
        return put_sentinels(self, sentinel, count)

    monkeypatch.setattr(Channel, "put_sentinels", counted)
    return counts


def _sorting(threads: int, items: int, delay: float, maxsize: int, sinks: int, key: str, every_item: bool = False) -> dict:
    """Source -> Sort x ``threads`` -> Collect x ``sinks``: ``items`` numbers, each an output, a failure or no_data."""
    return {
        "queues": [{"name": "numbers", "maxsize": maxsize}, {"name": "kept", "maxsize": maxsize}],
        "workers": [
            stage("Source", "Range", input_values=[[0, items]], output_queues="numbers"),
            stage("Sort", "Sort", instances=threads, input_queue="numbers", output_queues="kept",
                  params={"delay": delay, "every_item": every_item}),
            stage("Sink", "Collect", instances=sinks, input_queue="kept", params={"key": key}),
        ],
    }


def test_thousands_of_threads_start_and_end_with_every_item_accounted_for(make_executor, key, monkeypatch):
    pills = _count_pills(monkeypatch)
    # Threads start on demand: with thousands of items waiting, each held 0.5 s, thousands start
    # (all 3,000 on a quiet machine; on a loaded one the queue may drain before the last ones do).
    threads, items = 3000, 10_000
    before = threading.active_count()
    started = time.monotonic()
    executor = make_executor({"max_failures": "100%", **_sorting(threads, items, 0.5, items, 3, key, every_item=True)})
    report = executor.run()
    assert time.monotonic() - started < 120  # ends, not hangs (about 3 s)
    assert report.exit_code == EXIT_OK, report.reason
    sort = report.stage("Sort")
    failed = [n for n in range(items) if n % 7 == 0]
    no_data = [n for n in range(items) if n % 7 and n % 5 == 0]
    kept = [n for n in range(items) if n % 7 and n % 5]
    # Every item is an output, a failure, a no_data, or a dead letter; nothing is lost.
    assert sort.items_in == items and sort.lost == 0 and sort.state == "done"
    assert (sort.items_out, sort.failed, sort.counters["no_data"]) == (len(kept), len(failed), len(no_data))
    assert sorted(workers.collected(key)) == kept
    assert sorted(entry["item"] for entry in read_dead_letters(report.dead_letter_path)) == failed
    # One pill per consumer thread, each queue's in one batch: 1 for Source, 3 for Sink, one per Sort thread.
    sort_threads = len(next(s for s in executor._stages if s.name == "Sort").slots)
    assert 1000 <= sort_threads <= threads
    assert sorted(pills) == [1, 3, sort_threads]
    assert threading.active_count() == before  # every thread ended and was joined


def test_an_interrupt_among_thousands_of_threads_accounts_for_every_item(make_executor, key):
    threads, items = 1500, 2000
    executor = None

    def interrupt_once_under_way(statuses) -> None:
        if executor is not None and not executor._interrupts and statuses[1].items_in > 0:
            executor.interrupt()

    document = {"monitor_interval": 0.05, **_sorting(threads, items, 0.05, 50, 2, key)}
    executor = make_executor(document, on_status=interrupt_once_under_way)
    report = executor.run()
    assert report.interrupted and report.exit_code == 130
    source, sort, sink = (report.stage(name) for name in ("Source", "Sort", "Sink"))
    entries = read_dead_letters(report.dead_letter_path)
    # The source made every number; each was stored, failed, no_data, or recorded as interrupted.
    assert source.items_out == items
    stored = sorted(workers.collected(key))
    assert len(stored) == sink.items_in == sort.items_out
    accounted = sort.items_out + sort.failed + sort.counters.get("no_data", 0) + sort.lost
    assert sort.items_in + sort.lost == items and accounted == items
    assert sum(1 for e in entries if e["kind"] == "interrupted") == sort.lost > 0
    assert sum(1 for e in entries if e["kind"] == "failed") == sort.failed


def test_threads_that_never_get_an_item_build_no_worker(run_pipeline, key):
    report = run_pipeline({
        "queues": [{"name": "numbers"}, {"name": "passed"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 3]], output_queues="numbers"),
            stage("Echo", "Echo", instances=500, params={"key": key, "max_delay": 0.05}, input_queue="numbers",
                  output_queues="passed"),
            stage("Sink", "Collect", input_queue="passed", params={"key": key}),
        ],
    })
    assert report.ok and sorted(workers.collected(key)) == [0, 1, 2]
    # 500 threads, 3 items: at most 3 workers built (and each closed); the other threads only took their pill.
    events = workers.events(key)
    assert 1 <= events["init"] == events["close"] <= 3


def test_an_item_whose_thread_cannot_build_its_worker_goes_to_another_thread(run_pipeline, key):
    report = run_pipeline({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 10]], output_queues="numbers"),
            stage("Sink", "FailsFirstBuild", instances=2, max_restarts=1, input_queue="numbers",
                  params={"key": key}),
        ],
    })
    sink = report.stage("Sink")
    assert report.ok, report.reason
    assert sorted(workers.collected(key)) == list(range(10))  # the item in hand when the build failed too
    assert sink.failed == sink.lost == 0 and sink.items_in == 10 and sink.restarts == 1


def test_the_first_status_comes_soon_whatever_the_monitor_interval(run_pipeline):
    seen: list[float] = []
    started = time.monotonic()
    run_pipeline({
        "monitor_interval": 60,
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 20]], output_queues="numbers"),
            stage("Work", "Slow", params={"delay": 0.1}, input_queue="numbers"),
        ],
    }, on_status=lambda statuses: seen.append(time.monotonic() - started))
    # About 2 s of work: a first status half a second in, then the final one (not one a minute in).
    assert len(seen) == 2 and seen[0] < seen[1] - 0.5


def test_pills_do_not_count_as_queued_items():
    channel = Channel(2)
    channel.put_many([1, 2])
    channel.put_sentinels(None, 5)  # past maxsize: every taker gets its pill at once
    assert channel.qsize() == 7 and channel.waiting() == 2
    assert channel.get_many(10, 0, until=None) == [1, 2, None]
    assert channel.waiting() == 0


def test_a_wake_that_found_the_queue_locked_is_done_by_retry_wake():
    # A signal handler's stop cannot wait for the queue's lock; the monitor then does the wake.
    channel = Channel(4)
    woken = threading.Event()

    def take() -> None:
        try:
            channel.get_many(1, timeout=30)
        except Exception:  # queue.Empty: woken without an item
            woken.set()

    thread = threading.Thread(target=take)
    thread.start()
    time.sleep(0.2)  # let it wait
    with channel.mutex:
        channel.wake_all()  # the lock is taken: owed, not done
    assert not woken.wait(0.3)
    channel.retry_wake()
    assert woken.wait(10)
    thread.join(10)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "engine.executor"]


def test_a_stage_with_far_more_threads_than_its_input_keeps_busy_is_warned_about_once(run_pipeline, key, caplog):
    caplog.set_level(logging.INFO, logger="engine")
    report = run_pipeline({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", instances=40, input_values=[[0, 5]], output_queues="numbers"),
            stage("Work", "Slow", instances=300, params={"delay": 0.2}, input_queue="numbers"),
        ],
    })
    assert report.ok
    assert _warnings(caplog) == [
        "Source: 40 threads, but only 1 input value to share; instances: 1 would do",
        "Work: 300 threads, but at most 5 were ever busy at once; instances: 5 would do",
    ]


def test_a_stage_its_input_keeps_busy_is_not_warned_about(run_pipeline, key, caplog):
    # The shape of the shipped pipeline: 1 source value, 20 fetchers for 100 items, 2 writers.
    caplog.set_level(logging.INFO, logger="engine")
    report = run_pipeline({
        "queues": [{"name": "numbers"}, {"name": "kept"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 100]], output_queues="numbers"),
            stage("Work", "Slow", instances=20, params={"delay": 0.05}, input_queue="numbers", output_queues="kept"),
            stage("Sink", "Collect", instances=2, input_queue="kept", params={"key": key}),
        ],
    })
    assert report.ok and len(workers.collected(key)) == 100
    assert _warnings(caplog) == []


_REFUSED = """
import resource, sys, threading
sys.path.insert(0, sys.argv[1])
from engine import PipelineConfig, PipelineExecutor, QueueConfig, StageConfig
from tests.engine import workers

threading.stack_size(256 * 1024 * 1024)  # a real refusal: the address-space limit fits only a few such threads
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 2000 * 1024 * 1024, resource.RLIM_INFINITY))
config = PipelineConfig(queues={"q": QueueConfig("q", 500)}, stages=(
    StageConfig("Src", workers.Range, input_values=([0, 200],), output_queues=("q",)),
    StageConfig("Sink", workers.Echo, instances=500, input_queue="q", params={"key": sys.argv[3], "max_delay": 0.02}),
))
report = PipelineExecutor(config, run_dir=sys.argv[2], on_status=lambda s: None).run()
print("exit", report.exit_code, "passed on", report.stage("Sink").items_out, "threads left:", threading.active_count())
"""


def test_a_thread_the_system_refuses_on_demand_leaves_the_stage_working_with_those_it_has(tmp_path, key):
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _REFUSED, str(repo), str(tmp_path / "runs"), key],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["exit 0 passed on 200 threads left: 1"]
    refused = [line for line in done.stderr.splitlines() if "refused" in line]
    assert len(refused) == 1, done.stderr[-2000:]
    assert refused[0].startswith("Sink: the system refused thread ")
    assert " of 500 (RuntimeError: can't start new thread); the stage goes on with " in refused[0]


def _stage(executor, name: str):
    return next(s for s in executor._stages if s.name == name)


def _threads_of(executor, name: str) -> int:
    return len(_stage(executor, name).slots)


def test_threads_start_on_demand_never_more_than_the_items_need(make_executor, key):
    executor = make_executor({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 6]], output_queues="numbers"),
            stage("Work", "Slow", instances=200, params={"delay": 0.2}, input_queue="numbers"),
        ],
    })
    report = executor.run()
    assert report.ok and report.stage("Work").items_out == 6
    # Six slow items at once: six threads take them (one more may start as the first ones look).
    assert 6 <= _threads_of(executor, "Work") <= 7
    assert _stage(executor, "Work").peak_busy == 6  # all six in hand together: none waited for a thread


def test_an_item_that_comes_while_every_thread_is_busy_gets_a_new_thread(make_executor, key):
    # Items come one by one, every 0.05 s, and each takes 0.4 s: without a thread started for each
    # newcomer they would queue behind the busy ones.
    executor = make_executor({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Paced", input_values=[[0, 8]], output_queues="numbers", params={"every": 0.05}),
            stage("Work", "Slow", instances=50, params={"delay": 0.4}, input_queue="numbers"),
        ],
    })
    report = executor.run()
    assert report.ok and report.stage("Work").items_out == 8
    # Seven or more in hand at once: each newcomer got a thread (it waits 0.4 s for none).
    assert _stage(executor, "Work").peak_busy >= 7
    assert _threads_of(executor, "Work") <= 9
