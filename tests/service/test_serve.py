"""``python main.py --every`` / ``serve`` as a user runs it: a real process, real signals, real runs."""

from __future__ import annotations

import datetime as dt
import re
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from service.history import list_runs
from tests.service.conftest import write_pipeline
from tests.service.process import ServiceProcess


def _serve(tmp_path: Path, pipeline: Path, *args: str) -> ServiceProcess:
    return ServiceProcess(tmp_path, "--pipeline", str(pipeline), "--no-progress", "--run-dir",
                          str(tmp_path / "runs"), "--no-dashboard", *args)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def _metric(text: str, line_start: str) -> float:
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    assert found, f"no {line_start} in:\n{text}"
    return float(found[0].rsplit(" ", 1)[1])


def test_failed_runs_keep_the_schedule_and_show_in_history_and_metrics(tmp_path: Path) -> None:
    # The sink's params name ${PRICE_SERVER_URL}: the service starts the bundled price server, once.
    pipeline = write_pipeline(tmp_path / "p.yaml", name="failing", items=20, fail_every=5,
                              store_key="${PRICE_SERVER_URL}")
    service = _serve(tmp_path, pipeline, "--every", "1s", "--metrics-port", "0")
    try:
        url = re.search(r"metrics at (\S+)", service.wait_for("metrics at ")).group(1)
        service.wait_for("run directory:", times=2)
        service.wait_for("next run at", times=2)  # between runs: /metrics is still up
        metrics = _scrape(url)
        assert _metric(metrics, 'pipeline_runs_total{outcome="failures"}') >= 2
        assert _metric(metrics, 'pipeline_last_run_outcome{outcome="failures"}') == 1
        assert _metric(metrics, "pipeline_last_run_exit_code") == 4
        assert _metric(metrics, "pipeline_last_run_duration_seconds") > 0
        ended = _metric(metrics, "pipeline_last_run_end_time_seconds")
        assert abs(ended - dt.datetime.now().timestamp()) < 60
        assert _metric(metrics, "pipeline_next_run_time_seconds") > ended
        assert 'pipeline_items_total{outcome="failed",stage="Work"} 4.0' in metrics  # the last run's stages
        service.signal(signal.SIGINT)
        assert service.finish() == 0
    finally:
        service.kill()
    runs = list_runs(tmp_path / "runs")
    assert len(runs) == service.count("run directory:") >= 2
    assert {r.outcome for r in runs} == {"failures"} and all(r.dead_letters == 4 for r in runs)
    assert service.count("started the bundled price server") == 1
    starts = sorted(r.started for r in runs if r.started)
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    # On the 1 s grid (a run slowed by a busy machine past its next start skips it), never two at once.
    assert all(round(gap) >= 1 and abs(gap - round(gap)) < 0.4 for gap in gaps), gaps
    assert all((r.path / "timeline.jsonl").is_file() for r in runs)


def test_a_pipeline_file_that_breaks_is_a_run_that_did_not_start(tmp_path: Path) -> None:
    good = write_pipeline(tmp_path / "p.yaml", name="breaks", items=5)
    text = good.read_text()
    service = ServiceProcess(tmp_path, "serve", "--pipeline", str(good), "--no-progress", "--run-dir",
                             str(tmp_path / "runs"), "--no-dashboard", "--every", "1s", "--metrics-port", "0")
    try:
        url = re.search(r"metrics at (\S+)", service.wait_for("metrics at ")).group(1)
        service.wait_for("run directory:")
        good.write_text("workers: [\n")  # broken while the service waits
        service.wait_for("error:")
        service.wait_for("next run at", times=2)  # the run that did not start is recorded by now
        metrics = _scrape(url)
        assert _metric(metrics, 'pipeline_runs_total{outcome="not started"}') >= 1
        assert _metric(metrics, 'pipeline_last_run_outcome{outcome="not started"}') == 1
        assert _metric(metrics, "pipeline_last_run_exit_code") == 2
        good.write_text(text)
        service.wait_for("run directory:", times=2)
        service.signal(signal.SIGTERM)
        assert service.finish() == 0
    finally:
        service.kill()
    outcomes = [r.outcome for r in reversed(list_runs(tmp_path / "runs"))]
    assert outcomes[0] == "done" and outcomes[-1] == "done"
    assert "not started" in outcomes
    failed = next(r for r in list_runs(tmp_path / "runs") if r.outcome == "not started")
    assert failed.exit_code == 2 and failed.pipeline == "breaks" and failed.reason
    assert "Traceback" not in service.stderr()


def test_first_interrupt_finishes_the_run_then_exits(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", name="slow", items=80, delay=0.02)
    service = _serve(tmp_path, pipeline, "--every", "1s")
    try:
        service.wait_for("Work:")  # the run is going
        service.signal(signal.SIGINT)
        service.wait_for("stopping: the run in progress finishes first")
        assert service.finish() == 0
    finally:
        service.kill()
    [run] = list_runs(tmp_path / "runs")
    assert run.outcome == "done" and run.items_out == 80


def test_second_interrupt_interrupts_the_run(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", name="slow", items=400, delay=0.02)
    service = _serve(tmp_path, pipeline, "--every", "1s")
    try:
        service.wait_for("Work:")
        service.signal(signal.SIGINT)
        service.wait_for("stopping:")
        service.signal(signal.SIGINT)
        service.wait_for("interrupted: no new items are started")
        assert service.finish() == 130
    finally:
        service.kill()
    [run] = list_runs(tmp_path / "runs")
    assert run.outcome == "interrupted" and run.items_out < 400


def test_an_idle_service_stops_at_once(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", items=3)
    service = _serve(tmp_path, pipeline, "--every", "1h")
    try:
        service.wait_for("next run at")
        service.signal(signal.SIGINT)
        assert service.finish(timeout=10) == 0
    finally:
        service.kill()
    assert len(list_runs(tmp_path / "runs")) == 1
    assert "stopping:" not in service.stderr()


@pytest.mark.parametrize("args, message", [
    (["--every", "5x"], "is not a duration"),
    (["--every", "1m", "--check"], "cannot be combined with --check"),
    (["serve"], "the following arguments are required: --every"),
    (["--every", "1m", "--pipeline", "missing.yaml"], "error:"),
])
def test_bad_service_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    service = ServiceProcess(tmp_path, *args)
    assert service.finish(timeout=20) == 2
    assert message in service.stderr() and "Traceback" not in service.stderr()
    assert not (tmp_path / "runs").exists()


def test_a_metrics_port_taken_is_one_line_and_exit_2(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", items=3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        service = _serve(tmp_path, pipeline, "--every", "1s", "--metrics-port", str(taken.getsockname()[1]))
        assert service.finish(timeout=20) == 2
    assert "cannot serve metrics" in service.stderr() and "Traceback" not in service.stderr()


def test_dashboard_options_without_every_are_refused(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", items=3)
    service = ServiceProcess(tmp_path, "--pipeline", str(pipeline), "--dashboard-port", "0")
    assert service.finish(timeout=20) == 2
    assert "the dashboard options go with --every" in service.stderr()
    assert not (tmp_path / "runs").exists()


def test_a_second_service_of_the_same_pipeline_and_run_dir_is_refused(tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.yaml", name="once", items=3)
    other = write_pipeline(tmp_path / "q.yaml", name="other", items=3)
    first = _serve(tmp_path, pipeline, "--every", "1h")
    try:
        first.wait_for("next run at")
        second = _serve(tmp_path, pipeline, "--every", "1h")
        assert second.finish(timeout=20) == 2
        assert f"another service already runs this pipeline into {tmp_path / 'runs'} " \
               f"(process {first.process.pid})" in second.stderr()
        third = _serve(tmp_path, other, "--every", "1h")  # another pipeline may share the run directory
        third.wait_for("next run at")
        third.signal(signal.SIGINT)
        assert third.finish() == 0
        first.signal(signal.SIGINT)
        assert first.finish() == 0
    finally:
        first.kill()
    assert [r.pipeline for r in list_runs(tmp_path / "runs")].count("once") == 1
    again = _serve(tmp_path, pipeline, "--every", "1h")  # the lock went with the process
    try:
        again.wait_for("next run at")
        again.signal(signal.SIGTERM)
        assert again.finish() == 0
    finally:
        again.kill()
