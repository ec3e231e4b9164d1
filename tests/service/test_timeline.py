"""timeline.jsonl recorded from a real run's status callbacks, and read back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine import StageStatus
from service.timeline import TIMELINE_NAME, TimelineRecorder, read_timeline
from yaml_reader import YamlPipelineExecutor

from tests.service.conftest import write_pipeline


def test_a_real_run_records_every_stage_over_time(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", items=60, delay=0.01)
    executor = YamlPipelineExecutor(pipeline, run_dir=tmp_path / "runs")
    recorder = TimelineRecorder(lambda: executor.run_path)
    executor._on_status = recorder
    report = executor.run()
    assert report.exit_code == 0
    assert executor.run_path is not None
    samples = read_timeline(executor.run_path)
    assert len(samples) >= 3
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert set(samples[0]["stages"]) == {"Source", "Work", "Store"}
    work = [s["stages"]["Work"] for s in samples]
    assert work[0]["queue_maxsize"] == 5
    assert any(w["rate"] > 0 for w in work)
    assert work[-1]["done"] == 60
    assert set(work[0]) == {"threads", "queue_depth", "queue_maxsize", "done", "rate", "failed", "retries"}


def _status(name: str = "A", items_in: int = 1) -> StageStatus:
    return StageStatus(name=name, alive=1, instances=1, queue_depth=0, items_in=items_in, items_out=items_in,
                       failed=0, lost=0, rate=1.0, expected=None, state="running")


def test_nothing_before_the_run_dir_exists_and_half_lines_are_skipped(tmp_path: Path) -> None:
    run: list[Path] = []
    recorder = TimelineRecorder(lambda: run[0] if run else None)
    recorder([_status()])
    run.append(tmp_path)
    recorder([_status(items_in=2)])
    with (tmp_path / TIMELINE_NAME).open("a") as file:
        file.write('{"t": 9, "stages": {"A"')  # a run killed mid-line
    samples = read_timeline(tmp_path)
    assert len(samples) == 1 and samples[0]["t"] == 0 and samples[0]["stages"]["A"]["done"] == 2
    assert read_timeline(tmp_path / "missing") == []


def test_a_long_run_keeps_a_bounded_timeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    recorder = TimelineRecorder(lambda: tmp_path)
    for _ in range(86_400):  # a day of statuses, one a second
        recorder([_status()])
        clock[0] += 1.0
    lines = (tmp_path / TIMELINE_NAME).read_text().splitlines()
    assert 1000 < len(lines) < 15_000
    assert json.loads(lines[-1])["t"] > 80_000


def test_a_write_that_fails_stops_recording_without_failing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = TimelineRecorder(lambda: tmp_path / "gone")
    recorder([_status()])
    recorder([_status()])
    assert caplog.text.count("cannot write the run timeline") == 1
