"""The service starts the dashboard (when the dashboard package is installed) and says where it is."""

from __future__ import annotations

import re
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from service.history import list_runs
from tests.service.conftest import write_pipeline
from tests.service.process import ServiceProcess

pytest.importorskip("dashboard", reason="the dashboard package is not in this checkout")


def _serve(tmp_path: Path, *args: str) -> ServiceProcess:
    pipeline = write_pipeline(tmp_path / "p.yaml", name="withui", items=5)
    return ServiceProcess(tmp_path, "--pipeline", str(pipeline), "--no-progress", "--run-dir",
                          str(tmp_path / "runs"), "--every", "1h", *args)


def test_the_dashboard_url_is_printed_and_answers_between_runs(tmp_path: Path) -> None:
    service = _serve(tmp_path, "--dashboard-port", "0")
    try:
        url = re.search(r"dashboard at (\S+)", service.wait_for("dashboard at ")).group(1)
        assert url.startswith("http://127.0.0.1:")
        service.wait_for("next run at")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
        with urllib.request.urlopen(url + "runs", timeout=10) as page:
            assert page.status == 200 and "withui" in page.read().decode()
        service.signal(signal.SIGINT)
        assert service.finish() == 0
    finally:
        service.kill()


def test_an_explicit_dashboard_port_taken_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        service = _serve(tmp_path, "--dashboard-port", str(taken.getsockname()[1]))
        assert service.finish(timeout=20) == 2
    assert service.stderr().startswith("error: ") and "Traceback" not in service.stderr()
    assert list_runs(tmp_path / "runs") == []  # no run started


def test_no_dashboard_serves_none(tmp_path: Path) -> None:
    service = _serve(tmp_path, "--no-dashboard")
    try:
        service.wait_for("next run at")
        service.signal(signal.SIGINT)
        assert service.finish() == 0
    finally:
        service.kill()
    assert "dashboard at" not in service.stderr()
