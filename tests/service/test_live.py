"""LiveRun read from another thread while a real run feeds it."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

from service.live import LiveRun
from yaml_reader import YamlPipelineExecutor

from tests.service.conftest import write_pipeline


def test_snapshots_follow_a_real_run(tmp_path: Path) -> None:
    live = LiveRun()
    assert live.snapshot()["state"] == "stopped"
    pipeline = write_pipeline(tmp_path / "p.yaml", name="livetest", items=80, delay=0.01)
    executor = YamlPipelineExecutor(pipeline, run_dir=tmp_path / "runs", on_status=live.update)
    live.begin("livetest", lambda: executor.run_path)
    seen: list[dict] = []
    stop = threading.Event()

    def read() -> None:  # the dashboard's side
        while not stop.is_set():
            seen.append(json.loads(json.dumps(live.snapshot())))
            stop.wait(0.02)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        executor.run()
    finally:
        stop.set()
        reader.join()
    running = [s for s in seen if s["stages"]]
    assert running and all(s["state"] == "running" and s["pipeline"] == "livetest" for s in running)
    assert running[-1]["run"] == executor.run_path.name
    stage = running[-1]["stages"][1]
    assert stage["name"] == "Work" and stage["queue_maxsize"] == 5 and "done" in stage and "rate" in stage
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
    live.wait(later)
    snap = live.snapshot()
    assert snap["state"] == "waiting" and snap["next_run"] == later.isoformat()
    assert snap["stages"][1]["done"] == 80  # the last run's figures stay while waiting
    live.stop()
    assert live.snapshot()["state"] == "stopped" and live.snapshot()["next_run"] is None
