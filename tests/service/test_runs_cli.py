"""``python main.py runs`` and ``--keep-runs`` over real runs of main.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import MAIN, cli_env, write_pipeline


def _main(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MAIN), *args], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=60)


def _run(tmp_path: Path, pipeline: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _main(tmp_path, "--pipeline", str(pipeline), "--no-progress", "--run-dir", str(tmp_path / "runs"), *args)


def test_keep_runs_removes_the_oldest_runs_and_nothing_else(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", name="kept", items=3)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "notes").mkdir()  # a person's: never removed
    (runs / "20200101-000000.000000-kept.txt").write_text("a file named like a run")
    made = []
    for _ in range(3):
        done = _run(tmp_path, pipeline, "--keep-runs", "2")
        assert done.returncode == 0, done.stderr
        made.append(done.stderr.rsplit("run directory: ", 1)[1].strip())
    left = sorted(p.name for p in runs.iterdir())
    assert left == sorted(["notes", "20200101-000000.000000-kept.txt", Path(made[1]).name, Path(made[2]).name])
    assert all((Path(m) / "timeline.jsonl").is_file() for m in made[1:])  # a single run records its timeline too


def test_bad_keep_runs_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _run(tmp_path, write_pipeline(tmp_path / "p.yaml"), "--keep-runs", "0")
    assert done.returncode == 2 and "not a number of runs of 1 or more" in done.stderr
    assert "Traceback" not in done.stderr


def test_runs_lists_what_a_person_needs(tmp_path: Path) -> None:
    assert _run(tmp_path, write_pipeline(tmp_path / "ok.yaml", name="fine", items=4)).returncode == 0
    assert _run(tmp_path, write_pipeline(tmp_path / "bad.yaml", name="flaky", items=10, fail_every=5)).returncode == 4
    listed = _main(tmp_path, "runs", "--run-dir", str(tmp_path / "runs"))
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if line.strip()]
    assert "started" in lines[0] and "dead letters" in lines[0]
    assert "flaky" in lines[1] and "failures (4)" in lines[1] and "failed_items.jsonl (2)" in lines[1]
    assert "fine" in lines[2] and "done (0)" in lines[2]
    as_json = _main(tmp_path, "runs", "--run-dir", str(tmp_path / "runs"), "--json", "-n", "1")
    [entry] = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert entry["pipeline"] == "flaky" and entry["items_out"] == 8 and entry["failed"] == 2
    assert entry["dead_letter_path"].endswith("failed_items.jsonl") and entry["duration"] > 0
    assert "the newest 1 of 2 runs" in _main(tmp_path, "runs", "--run-dir", str(tmp_path / "runs"), "-n", "1").stderr


def test_runs_with_no_runs_says_so(tmp_path: Path) -> None:
    done = _main(tmp_path, "runs", "--run-dir", str(tmp_path / "nothing"))
    assert done.returncode == 0 and f"no runs in {tmp_path / 'nothing'}" in done.stderr
    bad = _main(tmp_path, "runs", "-n", "x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
