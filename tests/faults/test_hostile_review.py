"""A hostile user's review of the promises: cases the first round of hardening did not try."""

from __future__ import annotations

import queue
import threading
import time
import uuid

from engine.channel import Channel
from engine.report import EXIT_OK
from tests.engine import workers
from tests.engine.conftest import stage


def test_a_stage_of_thousands_of_idle_threads_ends(run_pipeline):
    key = uuid.uuid4().hex
    # Few items, many threads: the idle ones must not spend the GIL polling, or the monitor
    # never gets to send their pills (6,000 threads polling every 0.1 s ran for over a minute).
    started = time.monotonic()
    report = run_pipeline({
        "queues": [{"name": "q"}],
        "workers": [
            stage("Src", "Range", input_values=[[0, 5]], output_queues="q"),
            stage("Sink", "Collect", instances=6000, input_queue="q", params={"key": key}),
        ],
    })
    assert report.exit_code == EXIT_OK, report.reason
    assert sorted(workers.collected(key)) == list(range(5))
    assert time.monotonic() - started < 45  # ends, not hangs (about 4 s on a quiet machine)


def test_waiting_takers_wake_at_once_when_woken():
    # A stop must not wait for a long poll to run out.
    channel = Channel(4)
    outcome: list[str] = []

    def take() -> None:
        try:
            channel.get_many(1, timeout=30)
        except queue.Empty:
            outcome.append("woken")

    thread = threading.Thread(target=take)
    thread.start()
    time.sleep(0.2)  # let it wait
    channel.wake_all()
    thread.join(10)
    assert outcome == ["woken"]
