"""What the pages compute: throughput from a timeline, the bottleneck sentence, failed items, the live state."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from dashboard import views
from service.history import read_run
from engine import StageStatus
from service.live import LiveRun


def _sample(t: float, **stages: dict) -> dict:
    return {"t": t, "at": 1_700_000_000 + t, "stages": stages}


def _run_dir(root: Path, name: str = "20260101-120000.000000-demo", report: dict | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True)
    if report is not None:
        (path / "report.json").write_text(json.dumps(report))
    return path


def test_throughput_is_items_finished_per_second_over_the_last_second():
    samples = [_sample(t, W={"done": done, "queue_depth": 0, "queue_maxsize": 10, "threads": 2})
               for t, done in [(0.0, 0), (0.5, 10), (1.0, 20), (1.5, 50), (2.0, 50), (4.0, 50), (5.0, 150)]]
    (stage,) = views.timeline(samples)
    # At 1.5 s the window reaches back to 0.5 s: (50 - 10) / 1.0; at 4.0 s the gap is 2 s: (50 - 50) / 2.
    assert stage.throughput == [(0.5, 20.0), (1.0, 20.0), (1.5, 40.0), (2.0, 30.0), (4.0, 0.0), (5.0, 100.0)]
    assert stage.mean_throughput == 30.0
    assert stage.threads[0] == (0.0, 2.0)


def test_the_stage_whose_queue_stays_full_is_named_the_bottleneck():
    samples = [_sample(float(t),
                       Fetch={"done": t, "queue_depth": 10 if t >= 2 else 3, "queue_maxsize": 10},
                       Store={"done": t, "queue_depth": 1, "queue_maxsize": 50},
                       Source={"done": 1, "queue_depth": 0, "queue_maxsize": 0})
               for t in range(10)]
    stages = views.timeline(samples)
    assert [s.name for s in stages] == ["Fetch", "Store", "Source"]
    fetch = stages[0]
    assert fetch.full_share == pytest.approx(0.8) and fetch.peak_depth == 10 and fetch.queue_maxsize == 10
    verdict = views.bottleneck(stages)
    assert verdict.startswith("Fetch's input queue was full in 80% of the samples")
    calm = views.timeline([_sample(float(t), Fetch={"done": t, "queue_depth": 1, "queue_maxsize": 10}) for t in range(5)])
    assert views.bottleneck(calm).startswith("No input queue was full for long")


def test_a_stage_that_appears_later_and_a_run_without_samples():
    samples = [_sample(0.0, A={"done": 0}), _sample(1.0, A={"done": 5}, B={"done": 1})]
    assert [(s.name, len(s.queue_depth)) for s in views.timeline(samples)] == [("A", 2), ("B", 1)]
    assert views.timeline([]) == []


def test_failed_items_are_read_up_to_a_limit_and_counted_whole(tmp_path):
    run = _run_dir(tmp_path, report={"started_at": "2026-01-01T12:00:00+00:00", "seconds": 5.0})
    lines = [json.dumps({"time": "2026-01-01T12:00:01+00:00", "stage": "S", "kind": "failed", "item": i,
                         "error_type": "E", "message": "m"}) for i in range(30)]
    (run / "failed_items.jsonl").write_text("\n".join(lines) + "\n{half a line")
    failed = views.failed_items(read_run(run), limit=10)
    assert failed is not None and failed.total == 30 and [e["item"] for e in failed.entries] == list(range(10))
    assert not failed.shared
    assert views.failed_items(read_run(_run_dir(tmp_path, "20260101-130000.000000-demo", report={}))) is None


def test_a_dead_letter_file_shared_by_runs_shows_only_this_runs_entries(tmp_path):
    shared = tmp_path / "all_failures.jsonl"
    shared.write_text("".join(json.dumps({"time": when, "stage": "S", "kind": "failed", "item": when}) + "\n"
                              for when in ["2026-01-01T11:00:00+00:00", "2026-01-01T12:00:02.500+00:00",
                                           "2026-01-01T13:00:00+00:00"]))
    run = _run_dir(tmp_path / "runs", report={"started_at": "2026-01-01T12:00:00+00:00", "seconds": 5.0,
                                              "dead_letter_path": str(shared)})
    failed = views.failed_items(read_run(run))
    assert failed is not None and failed.shared and failed.total == 1
    assert failed.entries[0]["item"] == "2026-01-01T12:00:02.500+00:00"


def test_now_prefers_the_services_running_run(tmp_path):
    live = LiveRun("demo")
    live.begin("demo", lambda: None)
    now = views.now(live.snapshot(), tmp_path)
    assert (now.state, now.source, now.pipeline) == ("running", "service", "demo")
    live.update([StageStatus(name="Fetch", alive=3, instances=4, queue_depth=5, items_in=40, items_out=30, failed=1,
                             lost=1, rate=2.5, expected=None, state="running", busy=2, queue_maxsize=10,
                             counters={"http.retries": 7}, queue_name="q")])
    (stage,) = views.now(live.snapshot(), tmp_path).stages
    assert (stage.threads, stage.queue_depth, stage.queue_maxsize, stage.done, stage.failed, stage.retries) == \
        ("3/4", 5, 10, 39, 2, 7)  # done: 40 taken - 2 in hand + 1 lost
    live.wait(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    waiting = views.now(live.snapshot(), tmp_path)
    assert waiting.state == "waiting" and waiting.next_run == "2030-01-01T00:00:00+00:00"
    assert [s.name for s in waiting.stages] == ["Fetch"]  # the last run's, as it ended


def test_without_a_service_a_run_in_progress_is_read_from_its_fresh_timeline(tmp_path):
    done = _run_dir(tmp_path, "20260101-120000.000000-demo", report={"outcome": "done", "seconds": 1.0})
    assert views.now(None, tmp_path).state == "idle" and views.now(None, tmp_path).last.name == done.name
    active = _run_dir(tmp_path, "20260101-120500.000000-demo")  # no report yet: still going
    (active / "timeline.jsonl").write_text(json.dumps(_sample(
        1.0, Fetch={"threads": 4, "queue_depth": 7, "queue_maxsize": 10, "done": 33, "rate": 12.5,
                    "failed": 1, "retries": 2})) + "\n")
    now = views.now(None, tmp_path)
    assert (now.state, now.source, now.run, now.last.name) == ("running", "run directory", active.name, done.name)
    (stage,) = now.stages
    assert (stage.name, stage.threads, stage.queue_depth, stage.done, stage.failed, stage.retries) == \
        ("Fetch", "4", 7, 33, 1, 2)
    old = time.time() - views.FRESH_SECONDS - 5  # the process was killed: its timeline stopped growing
    os.utime(active / "timeline.jsonl", (old, old))
    assert views.now(None, tmp_path).state == "idle"
