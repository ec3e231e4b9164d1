"""The schedule itself, in-process with real time: anchored starts, no overlap, skipped start times, stop."""

from __future__ import annotations

import threading
import time

import pytest

from service.schedule import Scheduler, describe_seconds, parse_every


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400),
                                           ("1.5m", 90), (" 2h ", 7200)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "0s", "-1m", "1w", "1h30m", "abc"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="e.g. 30s, 15m, 1h or 1d"):
        parse_every(text)


def test_describe_seconds() -> None:
    assert [describe_seconds(s) for s in (2.5, 60, 3725, 90000)] == ["2.5s", "1m", "1h 2m", "1d 1h"]


def test_starts_stay_on_the_grid_and_an_overrun_skips_start_times(caplog: pytest.LogCaptureFixture) -> None:
    every, starts, ends = 0.25, [], []
    durations = [0.1, 0.1, 0.6, 0.05, 0.05]  # the third run lasts past two start times

    def run_once() -> int:
        starts.append(time.monotonic())
        time.sleep(durations[len(starts) - 1])
        ends.append(time.monotonic())
        if len(starts) == len(durations):
            scheduler.stop()
        return 4  # a failed run: the schedule goes on

    scheduler = Scheduler(every, run_once)
    assert scheduler.run() == 4
    slots = [round((s - starts[0]) / every) for s in starts]
    assert slots == [0, 1, 2, 5, 6]
    assert all(abs(s - starts[0] - k * every) < 0.1 for s, k in zip(starts, slots))  # no drift builds up
    assert all(start >= end for start, end in zip(starts[1:], ends))  # never two at once
    assert scheduler.runs == 5 and scheduler.skipped == 2
    assert caplog.text.count("start time(s) skipped") == 1 and "2 start time(s) skipped" in caplog.text


def test_stop_while_waiting_ends_at_once_and_stop_during_a_run_lets_it_finish() -> None:
    finished = []

    def run_once() -> int:
        threading.Timer(0.05, scheduler.stop).start()  # as a signal would, mid-run
        time.sleep(0.2)
        finished.append(True)
        return 0

    scheduler = Scheduler(3600, run_once)
    began = time.monotonic()
    assert scheduler.run() == 0
    assert finished == [True] and time.monotonic() - began < 10  # did not wait for the next hour

    idle = Scheduler(3600, run_once)
    idle.stop()
    assert idle.run() is None and idle.runs == 0
