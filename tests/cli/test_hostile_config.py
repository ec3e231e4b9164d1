"""``python main.py`` on hostile pipeline files and paths: one line, exit 2, nothing left behind.

And mid-run: a dead-letter file that stops taking writes, and items of megabytes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "main.py"
W = "tests.engine.workers"


def _pipeline(**top: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "hostile",
        "queues": [{"name": "q"}],
        "workers": [
            {"name": "Src", "location": W, "class": "Range", "input_values": [[0, 30]], "output_queues": "q"},
            {"name": "Sink", "location": W, "class": "FailSome", "input_queue": "q", "params": {"every": 3}},
        ],
    }
    document.update(top)
    return document


def _main(tmp_path: Path, pipeline: dict[str, Any] | str | bytes, *args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "pipeline.yaml"
    if isinstance(pipeline, dict):
        pipeline = yaml.safe_dump(pipeline, sort_keys=False)
    path.write_bytes(pipeline if isinstance(pipeline, bytes) else pipeline.encode())
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_LOCATION", "PRICE_SERVER_URL")}
    return subprocess.run(
        [sys.executable, str(MAIN), "--pipeline", str(path), "--no-progress", "--run-dir", str(tmp_path / "runs"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, **popen,
    )


def _one_line_exit_2(result: subprocess.CompletedProcess[str], fragment: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert fragment in lines[0], lines[0]
    return lines[0]


def _laughs() -> str:
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{n}: &lol{n} [" + ", ".join([f"*lol{n - 1}"] * 10) + "]" for n in range(1, 10)]
    return "\n".join(lines) + "\n"


HOSTILE = {
    "a million threads": (
        yaml.safe_dump(_pipeline()).replace("class: FailSome", "class: FailSome\n  instances: 1000000"),
        "instances: must be from 1 to 10,000 (threads in this stage), not 1000000",
    ),
    "billion laughs": (_laughs() + yaml.safe_dump(_pipeline()), "more than 50,000 values"),
    "nesting thousands deep": ("x: " + "[" * 5000 + "]" * 5000 + "\n" + yaml.safe_dump(_pipeline()), "nest more than 50 deep"),
    "NUL byte": (yaml.safe_dump(_pipeline()).replace("Sink", "Si\0nk", 1), "a NUL byte at column"),
    "sys.exit on import": (
        yaml.safe_dump(_pipeline()).replace("location: tests.engine.workers\n  name: Sink",
                                            "location: tests.engine.exits_on_import\n  name: Sink"),
        "importing module 'tests.engine.exits_on_import' failed: it called sys.exit(3)",
    ),
    "a queue no stage uses": (
        yaml.safe_dump(_pipeline(queues=[{"name": "q"}, {"name": "spare"}])), "queue 'spare' is declared but no stage uses it",
    ),
    "name with a path": (yaml.safe_dump(_pipeline(name="../../outside")), "the pipeline name '../../outside' holds a path separator"),
    "name with an escape": (yaml.safe_dump(_pipeline(name="red\x1b[31m")), "holds the control character U+001B"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_pipeline_file_gets_one_line_and_exit_2(tmp_path, case):
    text, fragment = HOSTILE[case]
    if case == "sys.exit on import":
        assert "exits_on_import" in text
    started = time.monotonic()
    result = _main(tmp_path, text)
    assert time.monotonic() - started < 30  # ends by itself (about 1 s)
    _one_line_exit_2(result, fragment)
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "outside").exists()


@pytest.mark.parametrize(
    "where, fragment",
    [
        ("{tmp}", "Is a directory"),
        ("{tmp}/pipeline.yaml/dead.jsonl", "Not a directory"),
        ("/proc/dead-letters.jsonl", "No such file or directory"),
        ("{tmp}/fifo", "No such device or address"),  # a FIFO nobody reads would hang the first write
    ],
    ids=["a directory", "parent is a file", "in /proc", "FIFO without a reader"],
)
def test_a_dead_letter_path_that_cannot_be_written_is_refused_at_start(tmp_path, where, fragment):
    os.mkfifo(tmp_path / "fifo")
    path = where.format(tmp=tmp_path)
    line = _one_line_exit_2(_main(tmp_path, _pipeline(dead_letter=path)), f"cannot write the dead-letter file {path}")
    assert fragment in line
    assert not list((tmp_path / "runs").glob("*")), "a run that did not start leaves no run directory"


def test_a_run_dir_that_cannot_be_made_is_refused_at_start(tmp_path):
    (tmp_path / "runs").write_text("a file, not a directory\n")
    _one_line_exit_2(_main(tmp_path, _pipeline()), f"cannot make the run directory under {tmp_path / 'runs'}")


def test_a_clean_run_leaves_no_dead_letter_file_or_directories(tmp_path):
    document = _pipeline(dead_letter=str(tmp_path / "new" / "deeper" / "dead.jsonl"))
    document["workers"][1] = {"name": "Sink", "location": W, "class": "Collect", "input_queue": "q", "params": {"key": "k"}}
    result = _main(tmp_path, document)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "new").exists()


def test_a_full_disk_mid_run_stops_the_run_with_exit_3_and_counts_what_was_not_recorded(tmp_path):
    # /dev/full takes open() and fails every write with ENOSPC, as a full disk does.
    result = _main(tmp_path, _pipeline(dead_letter="/dev/full"))
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "done (exit code 0)" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if "dead-letter" in line and "ERROR" in line]
    assert errors == [errors[0]] and "cannot write the dead-letter file /dev/full: No space left on device" in errors[0]
    (report_file,) = (tmp_path / "runs").glob("*/report.json")
    report = json.loads(report_file.read_text())
    failed = sum(s["failed"] + s["lost"] for s in report["stages"])
    assert failed > 0 and report["unrecorded"] == failed and report["dead_letters"] == 0
    assert report["exit_code"] == 3
    assert f"{failed} item(s) that failed or were not processed are not in it (exit code 3)" in " ".join(result.stdout.split())


def test_a_file_size_limit_mid_run_keeps_whole_lines_and_counts_the_rest(tmp_path):
    # RLIMIT_FSIZE: the file takes some entries, then a write is cut short (EFBIG), as on a quota.
    # The limit leaves room for report.json (every file of the process is held to it).
    dead = tmp_path / "dead.jsonl"
    limit_bytes = 20_000

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    document = _pipeline(dead_letter=str(dead))
    document["workers"][0]["input_values"] = [[0, 3000]]  # 1,000 failures: far more than fit
    result = _main(tmp_path, document, preexec_fn=limit)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    entries = [json.loads(line) for line in dead.read_text().splitlines()]  # every line whole
    assert 0 < len(entries) < 1000 and dead.stat().st_size <= limit_bytes
    (report_file,) = (tmp_path / "runs").glob("*/report.json")
    report = json.loads(report_file.read_text())
    failed = sum(s["failed"] + s["lost"] for s in report["stages"])
    assert report["dead_letters"] == len(entries) and report["dead_letters"] + report["unrecorded"] == failed


def test_a_ten_megabyte_item_does_not_flood_the_log_and_is_kept_whole_in_the_dead_letter(tmp_path):
    size = 10_000_000
    dead = tmp_path / "dead.jsonl"
    document = {
        "name": "huge",
        "dead_letter": str(dead),
        "queues": [{"name": "q"}],
        "workers": [
            {"name": "Src", "location": W, "class": "Huge", "input_values": [size, size], "output_queues": "q"},
            {"name": "Sink", "location": W, "class": "FailHuge", "input_queue": "q"},
        ],
    }
    result = _main(tmp_path, document)
    assert result.returncode == 4, result.stderr[-2000:]  # both items failed
    # Two failures, each logged by the engine and by the worker's own (library) logger.
    assert len(result.stderr) < 20_000, len(result.stderr)
    assert len(result.stdout) < 20_000
    assert "more characters]" in result.stderr
    entries = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [len(e["item"]) for e in entries] == [size, size]
    assert all(e["message"].startswith("cannot handle xxx") and len(e["message"]) > size for e in entries)


def test_two_runs_started_at_once_get_their_own_run_directories(tmp_path):
    document = _pipeline()
    document["workers"][1] = {"name": "Sink", "location": W, "class": "Collect", "input_queue": "q", "params": {"key": "k"}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(document))
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_LOCATION", "PRICE_SERVER_URL")}
    command = [sys.executable, str(MAIN), "--pipeline", "pipeline.yaml", "--no-progress", "--run-dir", "runs"]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(3)]
    for process in processes:
        process.communicate(timeout=60)
        assert process.returncode == 0
    reports = list((tmp_path / "runs").glob("*-hostile*/report.json"))
    assert len(reports) == 3


def test_the_system_refusing_a_thread_at_start_is_one_line_and_exit_2(tmp_path):
    # A real refusal: with 256 MB thread stacks, the address-space limit fits the monitor thread and
    # no other, so the first stage's first thread is refused (the others would start on demand).
    script = f"""
import resource, sys, threading
sys.argv = ["main.py", "--pipeline", sys.argv[1], "--no-progress", "--run-dir", sys.argv[2]]
sys.path.insert(0, {str(REPO)!r})
from cli.app import main
threading.stack_size(256 * 1024 * 1024)
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 400 * 1024 * 1024, resource.RLIM_INFINITY))
sys.exit(main())
"""
    document = _pipeline()
    document["workers"][1]["instances"] = 50
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document))
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_LOCATION", "PRICE_SERVER_URL")}
    result = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "runs")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    line = _one_line_exit_2(result, "stage Src cannot start: the system refused its first thread")
    assert line.endswith("(RuntimeError: can't start new thread)")
    assert not list((tmp_path / "runs").glob("*"))
