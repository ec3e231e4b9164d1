"""The run history read back from real runs' directories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service.history import list_runs, prune_runs, read_run

from tests.service.conftest import MAIN, cli_env, write_pipeline


def _run_cli(tmp_path: Path, pipeline: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAIN), "--pipeline", str(pipeline), "--no-progress", "--run-dir",
         str(tmp_path / "runs"), *args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60,
    )


def test_a_real_runs_report_is_read_back(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", name="hist", items=20, fail_every=5)
    done = _run_cli(tmp_path, pipeline)
    assert done.returncode == 4, done.stderr
    [entry] = list_runs(tmp_path / "runs")
    assert entry.pipeline == "hist"
    assert entry.outcome == "failures" and entry.exit_code == 4
    assert entry.items_in == 1 and entry.items_out == 16  # one input value; 4 of 20 numbers failed
    assert entry.failed == 4 and entry.dead_letters == 4
    assert entry.dead_letter_path == entry.path / "failed_items.jsonl"
    assert entry.started is not None and entry.started.tzinfo is not None
    assert entry.duration is not None and entry.duration > 0
    assert json.loads(json.dumps(entry.to_dict()))["outcome"] == "failures"


def test_broken_and_foreign_directories(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "20260101-120000.000001-alpha").mkdir()  # no report: running now, or killed
    (runs / "20260101-120001.000001-beta").mkdir()
    (runs / "20260101-120001.000001-beta" / "report.json").write_text('{"outcome": "done", "items": [1]')
    (runs / "20260101-120002.000001-gamma").mkdir()
    (runs / "20260101-120002.000001-gamma" / "report.json").write_text('["not", "a", "report"]')
    (runs / "my-notes").mkdir()  # not a run: never listed
    (runs / "20260101-120003.000001-file").write_text("a file named like a run")
    entries = list_runs(runs)
    assert [e.name for e in entries] == [
        "20260101-120002.000001-gamma", "20260101-120001.000001-beta", "20260101-120000.000001-alpha"]
    assert {e.outcome for e in entries} == {"unfinished"}
    assert [e.pipeline for e in entries] == ["gamma", "beta", "alpha"]
    assert entries[-1].started is not None and entries[-1].started.hour == 12
    assert read_run(runs / "20260101-120000.000001-alpha").exit_code is None
    assert list_runs(tmp_path / "missing") == []


def test_prune_keeps_the_newest_and_touches_nothing_else(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    names = [f"20260101-1200{i:02d}.000000-p" for i in range(6)]
    for name in names:
        (runs / name).mkdir()
        (runs / name / "report.json").write_text("{}")
    (runs / "keep-me").mkdir()
    (runs / "20250101-000000.000000-link").symlink_to(runs / "keep-me")
    removed = prune_runs(runs, 2, protect=[runs / names[0]])
    assert sorted(p.name for p in removed) == names[1:4]
    assert sorted(p.name for p in runs.iterdir()) == sorted(
        [names[0], names[4], names[5], "keep-me", "20250101-000000.000000-link"])
    assert prune_runs(runs, 10) == []
