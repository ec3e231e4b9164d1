"""``python main.py`` as a user runs it: a real subprocess, real signals, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.app import InterruptHandler

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "main.py"
W = "tests.engine.workers"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_LOCATION", "PRICE_SERVER_URL")}
    env.update(extra)
    return env


def _free_port() -> int:
    """A local port where nothing listens: one the OS just handed out and took back."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _slow_pipeline(tmp_path: Path, values: int = 400, store_delay: float = 0.001) -> Path:
    return _write(tmp_path, {
        "name": "slow",
        "monitor_interval": 0.05,
        "queues": [{"name": "numbers", "maxsize": 20}, {"name": "passed", "maxsize": 20}],
        "workers": [
            {"name": "Source", "location": W, "class": "Range", "instances": 1,
             "input_values": [[i * 10, i * 10 + 10] for i in range(values)], "output_queues": "numbers"},
            {"name": "Work", "location": W, "class": "Slow", "instances": 4, "params": {"delay": 0.01},
             "input_queue": "numbers", "output_queues": "passed"},
            {"name": "Store", "location": W, "class": "Slow", "params": {"delay": store_delay}, "input_queue": "passed"},
        ],
    })


def _start(tmp_path: Path, pipeline: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(MAIN), "--pipeline", str(pipeline), "--no-progress", "--run-dir", str(tmp_path / "runs"), *args],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_until_running(process: subprocess.Popen[str]) -> list[str]:
    """Read the log until the monitor reports the Work stage busy; return the lines read."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "Work:" in line and " in 0," not in line:
            return lines
    raise AssertionError("the run ended before it got going:\n" + "".join(lines))


def _interrupt(process: subprocess.Popen[str], times: int) -> list[str]:
    """Send SIGINT ``times`` times, each after the previous one was logged, as a person would.

    Signals sent back to back coalesce: Python runs the handler once for several pending ones.
    """
    assert process.stderr is not None
    lines: list[str] = []
    for count in range(1, times + 1):
        process.send_signal(signal.SIGINT)
        if count == 3:
            break
        expected = "interrupted: no new items are started" if count == 1 else "interrupted again"
        for line in process.stderr:
            lines.append(line)
            if expected in line:
                break
        else:
            raise AssertionError("the run ended before the interrupt was seen:\n" + "".join(lines))
    return lines


def _report(tmp_path: Path) -> dict[str, Any]:
    (report,) = (tmp_path / "runs").glob("*/report.json")
    return json.loads(report.read_text())


def _stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_while_the_modules_load_is_one_line_and_exit_130(tmp_path, signum):
    # -X importtime reports each module as it finishes loading: once one of SQLAlchemy's has, main.py is
    # inside `from cli.app import main`, the window where a Ctrl+C used to print a traceback.
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", str(MAIN), "--pipeline", str(_slow_pipeline(tmp_path))],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip().startswith("sqlalchemy"):
            process.send_signal(signum)
            break
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    messages = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert messages == ["interrupted"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_interrupt_starts_no_new_item_and_the_sink_stores_what_was_done(tmp_path, signum):
    process = _start(tmp_path, _slow_pipeline(tmp_path))
    before = _wait_until_running(process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)  # the process ends: no thread is left behind
    log = "".join(before) + err
    assert process.returncode == 130, log
    assert "Traceback" not in log
    assert "interrupted: no new items are started;" in log
    assert "interrupted; " in out and "item(s) not started" in out
    report = _report(tmp_path)
    assert report["interrupted"] is True
    source, work, store = (_stage(report, n) for n in ("Source", "Work", "Store"))
    assert source["state"] == work["state"] == "stopped"
    assert source["items_in"] + source["lost"] == 400  # every value taken, or dead-lettered as interrupted
    assert source["lost"] > 0
    assert work["items_in"] + work["lost"] == source["items_out"]  # items queued for Work are not started
    assert store["lost"] == 0 and store["items_in"] == work["items_out"]  # the sink stores all that was done
    assert "exit code 130" in out


@pytest.mark.timeout(120)
def test_two_interrupts_stop_the_sink_too_after_the_item_in_hand(tmp_path):
    # A sink slow enough that, after the first interrupt, it is still draining its queue (up to 20
    # items, a second or more) when the second comes, however loaded the machine.
    process = _start(tmp_path, _slow_pipeline(tmp_path, store_delay=0.05))
    _wait_until_running(process)
    seen = _interrupt(process, 2)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert any("interrupted again" in line for line in seen)
    report = _report(tmp_path)
    work, store = _stage(report, "Work"), _stage(report, "Store")
    assert store["state"] == "stopped" and store["items_in"] + store["lost"] == work["items_out"]
    assert work["items_in"] + work["lost"] == _stage(report, "Source")["items_out"]


@pytest.mark.timeout(60)
def test_a_run_that_succeeds_exits_0_and_writes_a_report(tmp_path):
    process = _start(tmp_path, _slow_pipeline(tmp_path, values=5))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "done (exit code 0)" in out
    report = _report(tmp_path)
    assert report["exit_code"] == 0 and _stage(report, "Store")["items_in"] == 50


def test_a_dying_stage_exits_1_with_one_sentence(tmp_path):
    pipeline = _write(tmp_path, {
        "queues": [{"name": "numbers", "maxsize": 2}],
        "workers": [
            {"name": "Source", "location": W, "class": "Range", "input_values": [[0, 10_000]], "output_queues": "numbers"},
            {"name": "PriceWorker", "location": W, "class": "Die", "instances": 3, "input_queue": "numbers"},
        ],
    })
    process = _start(tmp_path, pipeline)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "stage PriceWorker died: SystemExit: worker gave up on" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["workers"][1].update(instances=0), "instances: must be a positive integer or auto, not 0"),
        (lambda d: d["workers"][1].update({"class": "Nope"}), "has no class 'Nope'"),
        (lambda d: d["workers"][1].update(location="workers.nope"), "cannot import module 'workers.nope'"),
    ],
    ids=["bad instances", "unknown class", "unknown module"],
)
def test_bad_configuration_exits_2_with_one_line(tmp_path, change, message):
    document = yaml.safe_load(_slow_pipeline(tmp_path).read_text())
    change(document)
    process = _start(tmp_path, _write(tmp_path, document))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_not_yaml_and_missing_file_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("queues: [\n")
    for path, message in ((bad, "not valid YAML"), (tmp_path / "none.yaml", "pipeline file not found")):
        result = subprocess.run([sys.executable, str(MAIN), "--pipeline", str(path)], cwd=tmp_path, env=_env(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert result.stderr.strip().startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr


def test_pipeline_location_comes_from_the_environment(tmp_path):
    pipeline = _slow_pipeline(tmp_path, values=2)
    result = subprocess.run([sys.executable, str(MAIN), "--no-progress", "--run-dir", str(tmp_path / "runs")],
                            cwd=tmp_path, env=_env(PIPELINE_LOCATION=str(pipeline)), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert _stage(_report(tmp_path), "Store")["items_in"] == 20


def test_help_explains_flags_environment_and_exit_codes():
    result = subprocess.run([sys.executable, str(MAIN), "-h"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for word in ("--pipeline", "--no-progress", "--log-level", "--strict", "--show-db", "PIPELINE_LOCATION",
                 "PRICE_SERVER_URL", "DATABASE_URL", "POSTGRES_HOST", "130"):
        assert word in result.stdout


def test_show_db_reports_rows_and_how_to_open_the_database(clean_prices):
    result = subprocess.run([sys.executable, str(MAIN), "--show-db"], env=_env(DATABASE_URL=clean_prices),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "open with psql:" in result.stdout or "open with:" in result.stdout
    assert "prices:" in result.stdout


def test_show_db_with_an_unreachable_database_exits_2_with_one_line():
    port = _free_port()
    result = subprocess.run([sys.executable, str(MAIN), "--show-db"],
                            env=_env(DATABASE_URL=f"postgresql://u:secret@127.0.0.1:{port}/x"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot reach postgresql+psycopg2://u:***@127.0.0.1:{port}/x")
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


def test_psql_opens_the_database(clean_prices):
    # psql reads its commands from standard input when it is not a terminal.
    result = subprocess.run([sys.executable, str(MAIN), "--psql"], env=_env(DATABASE_URL=clean_prices),
                            input="SELECT 40 + 2 AS answer;\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "answer" in result.stdout and "42" in result.stdout


def test_psql_refuses_a_database_that_is_not_postgresql(tmp_path):
    result = subprocess.run([sys.executable, str(MAIN), "--psql"],
                            env=_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "is not a PostgreSQL database" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(120)
def test_a_third_interrupt_exits_at_once(tmp_path):
    # After two interrupts the sink still finishes the item in hand (30 s here);
    # a third one is the user insisting, and the process must go now.
    pipeline = _write(tmp_path, {
        "name": "backlog",
        "monitor_interval": 0.05,
        "queues": [{"name": "numbers", "maxsize": 2000}],
        "workers": [
            {"name": "Source", "location": W, "class": "Range", "input_values": [[0, 1000]], "output_queues": "numbers"},
            {"name": "Work", "location": W, "class": "Slow", "params": {"delay": 30}, "input_queue": "numbers"},
        ],
    })
    process = _start(tmp_path, pipeline)
    _wait_until_running(process)
    _interrupt(process, 3)
    process.communicate(timeout=20)
    assert process.returncode == 130


class _LockingExecutor:
    """Stands in for the executor in the signal handler: ``interrupt()`` holds a plain lock, as
    setting a stop event does, and a signal may arrive meanwhile (``signals_inside`` of them)."""

    run_path = None

    def __init__(self, signals_inside: int) -> None:
        self.handler: Any = None
        self.calls = 0
        self._lock = threading.Lock()
        self._signals_inside = signals_inside

    def interrupt(self) -> int:
        if not self._lock.acquire(timeout=2):
            raise AssertionError("deadlock: the handler ran interrupt() inside interrupt()")
        try:
            self.calls += 1
            while self._signals_inside:  # Python runs a handler between any two bytecodes
                self._signals_inside -= 1
                self.handler(signal.SIGINT, None)
        finally:
            self._lock.release()
        return self.calls


def test_an_interrupt_arriving_while_the_last_is_handled_is_applied_after_it_never_inside_it():
    executor = _LockingExecutor(signals_inside=1)
    heard: list[int] = []
    executor.handler = InterruptHandler(executor, heard.append)  # type: ignore[arg-type]
    executor.handler(signal.SIGINT, None)
    assert executor.calls == 2 and heard == [1, 2]


def test_a_third_interrupt_arriving_while_the_second_is_handled_exits_at_once(monkeypatch):
    exits: list[int] = []

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    executor = _LockingExecutor(signals_inside=0)
    executor.handler = InterruptHandler(executor, None)  # type: ignore[arg-type]
    executor.handler(signal.SIGINT, None)
    executor._signals_inside = 1  # the third comes while the second holds the lock
    with pytest.raises(SystemExit):
        executor.handler(signal.SIGINT, None)
    assert exits == [130] and executor.calls == 2
