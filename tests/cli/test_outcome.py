"""``python main.py`` tells a script the truth: exit 4 and a yellow "finished with N failures" beyond max_failures."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from cli.display import render_summary
from engine import RunReport, StageReport
from engine.report import EXIT_FAILURES
from tests.cli.test_app import MAIN, W, _env, _report, _stage, _write


def _run(tmp_path: Path, document: dict, *args: str, **popen: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAIN), "--pipeline", str(_write(tmp_path, document)), "--no-progress",
         "--run-dir", str(tmp_path / "runs"), *args],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, **popen,
    )


def _flat(text: str) -> str:
    """The text with every run of whitespace made one space (rich wraps long lines at 80 columns)."""
    return " ".join(text.split())


def _filtering(**top: object) -> dict:
    """Items 1..100; every tenth fails (10 failures of 1 + 100 + 90 = 191 item attempts)."""
    return {
        **top,
        "queues": [{"name": "numbers"}, {"name": "kept"}],
        "workers": [
            {"name": "Source", "location": W, "class": "Range", "input_values": [[1, 101]], "output_queues": "numbers"},
            {"name": "Filter", "location": W, "class": "FailSome", "params": {"every": 10}, "input_queue": "numbers",
             "output_queues": "kept"},
            {"name": "Sink", "location": W, "class": "Counting", "input_queue": "kept"},
        ],
    }


def test_a_worker_that_returns_instead_of_yielding_exits_4_with_the_failures_by_type(tmp_path):
    result = _run(tmp_path, {
        "name": "returns",
        "max_failures": "100%",  # no allowance makes a run in which every item failed "done"
        "queues": [{"name": "numbers"}, {"name": "prices"}],
        "workers": [
            {"name": "Source", "location": W, "class": "Range", "input_values": [[1, 266]], "output_queues": "numbers"},
            {"name": "Price", "location": W, "class": "ReturnsValue", "instances": 4, "input_queue": "numbers",
             "output_queues": "prices"},
            {"name": "Sink", "location": W, "class": "Counting", "input_queue": "prices"},
        ],
    })
    assert result.returncode == EXIT_FAILURES == 4, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    out = _flat(result.stdout)
    assert "finished with 265 failures (TypeError 265); nothing reached a sink (exit code 4)" in out
    assert "done" not in out.split("failed_items.jsonl")[-1]
    report = _report(tmp_path)
    assert report["exit_code"] == 4 and report["outcome"] == "failures"
    assert report["failures"] == 265 and report["delivered"] == 0 and report["attempts"] == 266
    assert report["max_failures"] == "100%" and report["errors"] == {"TypeError": 265}
    assert _stage(report, "Price")["errors"] == {"TypeError": 265}


@pytest.mark.parametrize(
    "in_file, flags, code",
    [
        (None, [], 4),
        (None, ["--max-failures", "10"], 0),
        (10, [], 0),
        (10, ["--max-failures", "9"], 4),
        (10, ["--strict"], 4),
        (0, ["--max-failures", "5.3%"], 0),
        ("50%", ["--max-failures", "5.2%"], 4),
    ],
    ids=["default 0", "flag 10", "file 10", "flag 9 wins over file 10", "strict wins over file 10", "flag 5.3%",
         "flag 5.2% wins over file 50%"],
)
def test_partial_failure_exits_0_within_the_allowance_and_4_beyond_it(tmp_path, in_file, flags, code):
    document = _filtering() if in_file is None else _filtering(max_failures=in_file)
    result = _run(tmp_path, document, *flags)
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    out = _flat(result.stdout)
    report = _report(tmp_path)
    assert report["failures"] == 10 and report["errors"] == {"ValueError": 10}
    if code == 4:
        assert "finished with 10 failures (ValueError 10); max_failures is" in out and "(exit code 4)" in out
        assert report["outcome"] == "failures"
    else:
        assert "done with 10 failures (ValueError 10), within max_failures" in out and "(exit code 0)" in out
        assert report["outcome"] == "done"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-failures", "101%"],
         "argument --max-failures: must be a whole number of failures >= 0 or a percentage"),
        (["--max-failures", "lots"], "argument --max-failures: must be a whole number"),
        (["--strict", "--max-failures", "3"], "not allowed with argument --strict"),
    ],
)
def test_a_bad_allowance_on_the_command_line_exits_2(tmp_path, flags, message):
    result = _run(tmp_path, _filtering(), *flags)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_bad_allowance_in_the_file_exits_2_with_one_line(tmp_path):
    result = _run(tmp_path, {"max_failures": "-3%", **_filtering()})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'pipeline.yaml'}:1: max_failures: must be a whole number")


def test_help_documents_the_allowance_strict_and_exit_4():
    result = subprocess.run([sys.executable, str(MAIN), "-h"], capture_output=True, text=True, timeout=60)
    text = _flat(result.stdout)
    assert "--max-failures N|N%" in text and "the same as --max-failures 0" in text
    assert "4 finished with failures" in text


def test_the_summary_of_a_run_with_failures_is_yellow_with_the_failures_by_type_per_stage():
    stages = [
        StageReport("PriceWorker", 20, 100, 13, 87, 0, 1.5, 0, "done", {}, {"HTTPError": 84, "InvalidPrice": 3}),
        StageReport("PostgresWorker", 2, 13, 0, 0, 0, 1.6, 0, "done", {"rows_written": 13}),
    ]
    reason = "finished with 87 failures (HTTPError 84, InvalidPrice 3); max_failures is 0 (of 214 item attempts)"
    report = RunReport(stages, EXIT_FAILURES, reason, Path("runs/x/failed_items.jsonl"), 87, 2.0)
    summary = render_summary(report, "wiki")
    console = Console(record=True, width=160, color_system=None)
    console.print(summary)
    text = console.export_text()
    (row,) = [line for line in text.splitlines() if "PriceWorker" in line]
    assert "HTTPError 84, InvalidPrice 3" in row
    last = summary.renderables[-1]
    assert str(last) == f"{reason} (exit code 4)" and last.style == "yellow"


def test_a_report_that_cannot_be_written_whole_is_not_left_half_written(tmp_path):
    # RLIMIT_FSIZE: any file may hold 700 bytes; report.json needs more, the dead-letter file less.
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (700, 700))

    document = _filtering()
    document["workers"][0]["input_values"] = [[1, 21]]  # 2 failures: the dead-letter file fits
    result = _run(tmp_path, document, preexec_fn=limit)
    assert result.returncode == 4, result.stderr  # the run's own outcome, whatever became of its report
    assert "cannot write" in result.stderr and "report.json: File too large" in result.stderr
    assert "Traceback" not in result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    # No half report, no partial file (the timeline, a line at a time, may have stopped at the limit).
    assert sorted(p.name for p in run.iterdir() if p.name != "timeline.jsonl") == ["failed_items.jsonl"]
