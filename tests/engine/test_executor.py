"""The engine at work: no item lost or duplicated, pills, failures, deaths, interrupts."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from engine import PipelineConfig, PipelineExecutor, QueueConfig, StageConfig, StageSetupError
from engine.dead_letter import read_dead_letters
from engine.report import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_STAGE_DIED
from engine.stage import DONE, PILL
from tests.engine import workers
from tests.engine.conftest import stage


def _chunks(total: int, parts: int) -> list[list[int]]:
    size = -(-total // parts)
    return [[start, min(start + size, total)] for start in range(0, total, size)]


@pytest.mark.parametrize("instances", [1, 7, 50])
def test_no_item_lost_or_duplicated(run_pipeline, key, instances):
    total = 10_000
    report = run_pipeline({
        "queues": [{"name": "numbers", "maxsize": 16}, {"name": "echoed", "maxsize": 8}],
        "workers": [
            stage("Source", "Range", instances=3, input_values=_chunks(total, 5), output_queues="numbers"),
            stage("Echo", "Echo", instances=instances, input_queue="numbers", output_queues=["echoed"],
                  params={"max_delay": 0.0002}),
            stage("Sink", "Collect", instances=3, input_queue="echoed", params={"key": key}),
        ],
    })
    assert report.exit_code == EXIT_OK, report.reason
    seen = workers.collected(key)
    assert len(seen) == total
    assert sorted(seen) == list(range(total))
    assert report.stage("Echo").items_in == report.stage("Echo").items_out == total
    assert report.dead_letters == 0
    assert not report.dead_letter_path.exists()  # a clean run leaves no dead-letter file


def test_exactly_one_pill_per_consumer_thread(make_executor, key):
    executor = make_executor({
        "queues": [{"name": "numbers", "maxsize": 4}],
        "workers": [
            stage("Source", "Range", instances=2, input_values=[[0, 100], [100, 300]], output_queues="numbers"),
            stage("Sink", "Collect", instances=9, input_queue="numbers", params={"key": key}),
        ],
    })
    report = executor.run()
    assert report.ok
    sink = next(s for s in executor._stages if s.name == "Sink")
    # Every consumer thread (they start on demand, up to 9) ended by taking a pill, and no pill is left over.
    assert 1 <= len(sink.slots) <= 9
    assert [slot.outcome for slot in sink.slots] == [DONE] * len(sink.slots)
    assert sink.input.pills_owed == 0
    assert sink.input.queue.qsize() == 0
    assert len(workers.collected(key)) == 300


@pytest.mark.timeout(60)
def test_pills_wait_for_the_slowest_producer_in_a_fan_in(run_pipeline, key):
    # The slow producer holds its items until the fast one has delivered everything (and so
    # has finished): the fast producer's end must not stop the consumer.
    report = run_pipeline({
        "queues": [{"name": "fast"}, {"name": "slow"}, {"name": "merged", "maxsize": 2}],
        "workers": [
            stage("FastSource", "Range", input_values=[[0, 500]], output_queues="fast"),
            stage("SlowSource", "Range", params={"tag": "s"}, input_values=[[0, 20]], output_queues="slow"),
            stage("Fast", "Echo", input_queue="fast", output_queues="merged"),
            stage("Slow", "Gate", instances=2, params={"key": key, "wait_for": 500}, input_queue="slow",
                  output_queues="merged"),
            stage("Sink", "Collect", instances=4, input_queue="merged", params={"key": key}),
        ],
    })
    assert report.ok, report.reason
    seen = workers.collected(key)
    assert Counter(type(x).__name__ for x in seen) == {"int": 500, "str": 20}
    assert sorted(x for x in seen if isinstance(x, str)) == sorted(f"s{i}" for i in range(20))


def test_fan_out_sends_every_item_to_every_output_queue(run_pipeline, key):
    report = run_pipeline({
        "queues": [{"name": "left"}, {"name": "right"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 250]], output_queues=["left", "right"]),
            stage("Left", "Collect", instances=2, input_queue="left", params={"key": key + "L"}),
            stage("Right", "Collect", instances=3, input_queue="right", params={"key": key + "R"}),
        ],
    })
    assert report.ok
    assert sorted(workers.collected(key + "L")) == list(range(250))
    assert sorted(workers.collected(key + "R")) == list(range(250))


def test_source_instances_split_the_values_without_duplicates(run_pipeline, key):
    values = [[i * 10, i * 10 + 10] for i in range(40)]
    report = run_pipeline({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", instances=4, input_values=values, output_queues="numbers"),
            stage("Sink", "Collect", input_queue="numbers", params={"key": key}),
        ],
    })
    assert report.ok
    assert report.stage("Source").items_in == 40  # each value taken once, by one of the four threads
    assert sorted(workers.collected(key)) == list(range(400))


def test_item_failures_go_to_the_dead_letter_file_and_the_rest_flows(run_pipeline, key, tmp_path):
    dead_letter = tmp_path / "dead.jsonl"
    report = run_pipeline({
        "queues": [{"name": "numbers"}, {"name": "kept"}],
        "workers": [
            stage("Source", "Range", input_values=[[1, 101]], output_queues="numbers"),
            stage("Filter", "FailSome", instances=4, params={"every": 10}, input_queue="numbers",
                  output_queues="kept"),
            stage("Sink", "Collect", input_queue="kept", params={"key": key}),
        ],
    }, dead_letter=dead_letter)
    assert report.exit_code == EXIT_FAILURES  # per-item failures are not fatal, but the run says so
    assert report.stage("Filter").failed == 10
    assert sorted(workers.collected(key)) == [i for i in range(1, 101) if i % 10]
    entries = read_dead_letters(dead_letter)
    assert sorted(e["item"] for e in entries) == list(range(10, 101, 10))
    first = entries[0]
    assert first["stage"] == "Filter" and first["kind"] == "failed"
    assert first["error_type"] == "ValueError" and "divisible by 10" in first["message"]
    assert first["time"].endswith("+00:00")


def test_batch_failures_fail_only_the_bad_items(run_pipeline, key):
    report = run_pipeline({
        "max_failures": 3,
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 1000]], output_queues="numbers"),
            stage("Writer", "BatchCollect", instances=2, batch_size=64, batch_timeout=0.05,
                  params={"key": key, "bad": [3, 500, 999]}, input_queue="numbers"),
        ],
    })
    assert report.ok
    assert report.stage("Writer").failed == 3
    assert sorted(workers.collected(key)) == [i for i in range(1000) if i not in (3, 500, 999)]
    assert workers.events(key)["batch"] < 1000  # items really travelled in batches


def test_close_runs_once_per_worker_object_and_flushes_buffers(run_pipeline, key):
    report = run_pipeline({
        "queues": [{"name": "numbers"}, {"name": "passed"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 200]], output_queues="numbers"),
            stage("Echo", "Echo", instances=5, params={"key": key}, input_queue="numbers", output_queues="passed"),
            stage("Writer", "BufferedCollect", instances=3, params={"key": key}, input_queue="passed"),
        ],
    })
    assert report.ok
    # A worker is built by each thread that takes an item (cheap items travel in chunks, so maybe not all 5).
    assert workers.events(key)["init"] == workers.events(key)["close"] and 1 <= workers.events(key)["init"] <= 5
    assert sorted(workers.collected(key)) == list(range(200))  # everything arrived through close()


def test_worker_counters_are_summed_into_the_report(run_pipeline):
    report = run_pipeline({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 100]], output_queues="numbers"),
            stage("Odd", "Counting", instances=3, input_queue="numbers"),
        ],
    })
    assert report.stage("Odd").counters == {"odd": 50}


def test_a_thread_that_dies_is_restarted_and_nothing_is_lost(run_pipeline, key):
    report = run_pipeline({
        "max_failures": 1,  # the item in hand when the thread died
        "queues": [{"name": "numbers"}, {"name": "passed"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 300]], output_queues="numbers"),
            stage("Fragile", "DieOnce", instances=2, params={"key": key}, input_queue="numbers",
                  output_queues="passed"),
            stage("Sink", "Collect", input_queue="passed", params={"key": key}),
        ],
    })
    assert report.ok, report.reason
    fragile = report.stage("Fragile")
    assert fragile.restarts == 1
    assert fragile.failed == 1  # the item in hand when the thread died is dead-lettered
    assert len(workers.collected(key)) == 299


def test_a_stage_whose_threads_all_die_ends_the_run_with_exit_1(run_pipeline, key):
    # The queue in front of the dying stage is small and the source has far more to give:
    # the source must not stay blocked on the full queue.
    report = run_pipeline({
        "queues": [{"name": "numbers", "maxsize": 5}, {"name": "passed", "maxsize": 5}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 100_000]], output_queues="numbers"),
            stage("Price", "Die", instances=4, max_restarts=2, params={"key": key}, input_queue="numbers",
                  output_queues="passed"),
            stage("Sink", "Collect", input_queue="passed", params={"key": key}),
        ],
    })
    assert report.exit_code == EXIT_STAGE_DIED
    assert report.reason.startswith("stage Price died: SystemExit: worker gave up on")
    price = report.stage("Price")
    assert price.state == "died" and price.restarts == 2
    assert workers.events(key) == {"init": 6, "close": 6}
    assert report.stage("Source").state == "stopped"
    assert report.stage("Sink").state == "done"
    # Whatever the source produced is accounted for: failed in the dying stage or lost with a reason.
    assert price.failed + price.lost == report.stage("Source").items_out
    entries = read_dead_letters(report.dead_letter_path)
    assert len(entries) == price.failed + price.lost
    assert any(e["kind"] == "lost" and "stage Price died" in e["message"] for e in entries)


def test_a_worker_that_cannot_be_built_kills_its_stage_with_the_reason(run_pipeline):
    report = run_pipeline({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 10]], output_queues="numbers"),
            stage("Broken", "BrokenInit", instances=2, max_restarts=0, input_queue="numbers"),
        ],
    })
    assert report.exit_code == EXIT_STAGE_DIED
    assert "stage Broken died: RuntimeError: cannot connect to anything" in report.reason
    # The stage may die before or after the source has put all ten: either way nothing vanishes.
    # What reached the queue is lost at Broken; a source stopped part-way loses its one input.
    source, broken = report.stage("Source"), report.stage("Broken")
    assert broken.lost == source.items_out
    assert source.lost == (0 if source.items_out == 10 else 1)


def test_first_interrupt_after_the_source_finished_stops_intake_and_stores_what_was_fetched(make_executor, key):
    # The source is done in a moment; 1000 items wait for Work (10 s of work at 2 x 0.02 s).
    executor = make_executor({
        "queues": [{"name": "numbers", "maxsize": 2000}, {"name": "passed", "maxsize": 10}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 1000]], output_queues="numbers"),
            stage("Work", "Slow", instances=2, params={"delay": 0.02, "key": key}, input_queue="numbers",
                  output_queues="passed"),
            stage("Sink", "Collect", input_queue="passed", params={"key": key, "max_delay": 0.002}),
        ],
    })
    interrupted_at: list[float] = []

    def ctrl_c() -> None:
        interrupted_at.append(time.monotonic())
        executor.interrupt()

    _interrupt_when(executor, lambda: workers.events(key)["started"] >= 20, action=ctrl_c)
    report = executor.run()
    ended_in = time.monotonic() - interrupted_at[0]

    assert report.exit_code == EXIT_INTERRUPTED and report.interrupted
    assert ended_in < 3, f"the run went on for {ended_in:.1f}s after the interrupt"
    source, work, sink = report.stage("Source"), report.stage("Work"), report.stage("Sink")
    assert source.state == "done" and source.items_out == 1000
    assert work.state == "stopped" and work.lost > 900  # not started: at most a few more after the interrupt
    # Nothing fetched is lost: every item Work put out was stored by the sink.
    assert sink.lost == sink.failed == 0
    assert len(workers.collected(key)) == sink.items_in == work.items_out == work.items_in
    # Every item not started is an `interrupted` dead letter, and every input is accounted for exactly once.
    entries = read_dead_letters(report.dead_letter_path)
    assert len(entries) == report.dead_letters == work.lost
    assert {(e["stage"], e["kind"], e["error_type"]) for e in entries} == {("Work", "interrupted", "NotProcessed")}
    assert sorted(workers.collected(key) + [e["item"] for e in entries]) == list(range(1000))
    assert "not started" in report.reason


def test_first_interrupt_stops_a_running_source_and_every_stage_but_the_sinks(make_executor, key):
    executor = make_executor({
        "queues": [{"name": "numbers", "maxsize": 10}, {"name": "passed"}],
        "workers": [
            stage("Source", "Range", input_values=[[i * 10, i * 10 + 10] for i in range(1000)],
                  output_queues="numbers"),
            stage("Work", "Slow", instances=2, params={"delay": 0.002, "key": key}, input_queue="numbers",
                  output_queues="passed"),
            stage("Sink", "Collect", input_queue="passed", params={"key": key}),
        ],
    })
    _interrupt_when(executor, lambda: workers.events(key)["started"] >= 20)
    report = executor.run()
    assert report.exit_code == EXIT_INTERRUPTED and report.interrupted
    source, work, sink = report.stage("Source"), report.stage("Work"), report.stage("Sink")
    assert source.state == work.state == "stopped"
    assert source.lost > 0 and source.items_in + source.lost == 1000  # the source's values not taken
    assert work.items_in + work.lost == source.items_out  # items queued for Work are not started either
    assert sink.lost == 0 and len(workers.collected(key)) == sink.items_in == work.items_out
    entries = read_dead_letters(report.dead_letter_path)
    assert len(entries) == source.lost + work.lost
    assert {e["kind"] for e in entries} == {"interrupted"}


def test_second_interrupt_stops_the_sinks_after_the_item_in_hand(make_executor, key):
    executor = make_executor({
        "queues": [{"name": "numbers", "maxsize": 1000}, {"name": "passed", "maxsize": 1000}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 5000]], output_queues="numbers"),
            stage("Work", "Echo", instances=2, input_queue="numbers", output_queues="passed"),
            stage("Sink", "Slow", params={"delay": 0.005, "key": key}, input_queue="passed", output_queues=[]),
        ],
    })

    _interrupt_when(executor, lambda: workers.events(key)["started"] >= 10, times=2)
    started = time.monotonic()
    report = executor.run()
    assert time.monotonic() - started < 5  # the sink did not work through its queue (1000 x 5 ms)
    assert report.exit_code == EXIT_INTERRUPTED
    work, sink = report.stage("Work"), report.stage("Sink")
    assert sink.state == "stopped" and sink.lost > 0 and sink.failed == 0
    assert sink.items_in + sink.lost == work.items_out
    entries = read_dead_letters(report.dead_letter_path)
    assert {e["kind"] for e in entries if e["stage"] == "Sink"} == {"interrupted"}
    assert len(entries) == sum(s.lost for s in report.stages)


def test_executor_built_in_python_without_yaml(tmp_path, key):
    config = PipelineConfig(
        queues={"q": QueueConfig("q", maxsize=3)},
        stages=(
            StageConfig("Source", workers.Range, input_values=([0, 50],), output_queues=("q",)),
            StageConfig("Sink", workers.Collect, instances=2, input_queue="q", params={"key": key}),
        ),
    )
    report = PipelineExecutor(config, run_dir=tmp_path, on_status=lambda s: None).run()
    assert report.ok
    assert sorted(workers.collected(key)) == list(range(50))


def test_status_callback_sees_every_stage(run_pipeline, key):
    seen: list[list[str]] = []
    run_pipeline({
        "monitor_interval": 0.01,
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 100]], output_queues="numbers"),
            stage("Sink", "Slow", params={"delay": 0.001}, input_queue="numbers"),
        ],
    }, on_status=lambda statuses: seen.append([(s.name, s.state, s.done) for s in statuses]))
    assert seen, "the monitor reports at least once, at the end"
    assert seen[-1] == [("Source", "done", 1), ("Sink", "done", 100)]


def test_the_pill_is_not_a_string():
    assert not isinstance(PILL, str) and PILL != "DONE"


def _interrupt_when(executor, condition, times: int = 1, action=None) -> None:
    """Call executor.interrupt() (or ``action``) from another thread once ``condition()`` holds."""

    def watch() -> None:
        while not condition():
            threading.Event().wait(0.005)
        for _ in range(times):
            (action or executor.interrupt)()

    threading.Thread(target=watch, daemon=True).start()


def test_a_stage_that_refuses_to_prepare_stops_the_run_before_it_starts(make_executor, key):
    executor = make_executor({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 10]], output_queues="numbers"),
            stage("Sink", "Unreachable", input_queue="numbers", params={"key": key}),
        ],
    })
    with pytest.raises(StageSetupError) as caught:
        executor.run()
    assert str(caught.value) == "stage Sink cannot start: cannot reach db.example: connection refused"
    assert workers.events(key)["prepared"] == 1 and workers.events(key)["init"] == 0


def test_slow_items_are_shared_out_one_at_a_time(run_pipeline, key):
    # Cheap items travel in chunks; slow ones must not: one thread taking a chunk of
    # slow items would work through them while the others sit idle.
    report = run_pipeline({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Work", "WhoDoesIt", instances=4, params={"key": key, "delay": 0.02},
                  input_values=list(range(24)), output_queues="numbers"),
            stage("Sink", "Collect", input_queue="numbers", params={"key": key}),
        ],
    })
    assert report.ok
    per_thread = workers.events(key)
    assert sum(per_thread.values()) == 24
    assert max(per_thread.values()) <= 12, per_thread  # a chunk would give one thread 20 or more


def test_cheap_items_travel_in_chunks_and_none_is_lost(run_pipeline, key):
    report = run_pipeline({
        "queues": [{"name": "a", "maxsize": 7}, {"name": "b", "maxsize": 3}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 20_000]], output_queues="a"),
            stage("Echo", "Echo", instances=3, input_queue="a", output_queues="b"),
            stage("Sink", "Collect", instances=2, input_queue="b", params={"key": key}),
        ],
    })
    assert report.ok
    assert sorted(workers.collected(key)) == list(range(20_000))


def test_items_failed_from_process_fails_every_item_it_names(run_pipeline):
    # A buffering writer's process() fails the rows it had buffered, not just the current one.
    report = run_pipeline({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 23]], output_queues="numbers"),
            stage("Writer", "BufferedRefusing", params={"every": 5}, input_queue="numbers"),
        ],
    })
    assert report.stage("Writer").failed == 23  # 4 flushes of 5 in process(), 3 left for close()
    entries = read_dead_letters(report.dead_letter_path)
    assert sorted(e["item"] for e in entries) == list(range(23))


@pytest.mark.timeout(30)
def test_a_thread_that_dies_holding_the_pill_still_lets_its_replacement_end(run_pipeline, key):
    # "slow" makes the pill arrive meanwhile; the cheap "a" then makes the thread take the rest
    # in one chunk, pill included, and it dies on "die": the restarted thread needs a pill too.
    report = run_pipeline({
        "queues": [{"name": "q"}],
        "workers": [
            stage("Src", "DieOn", input_values=["slow", "a", "b", "c", "die"], output_queues="q"),
            stage("Sink", "Collect", input_queue="q", params={"key": key}),
        ],
    })
    assert report.stage("Src").restarts == 1 and report.stage("Src").failed == 1
    assert sorted(workers.collected(key)) == ["a", "b", "c", "slow"]
