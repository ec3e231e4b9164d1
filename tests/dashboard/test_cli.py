"""``python main.py dashboard`` as a user runs it: a real subprocess, its printed URL, signals, exit codes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.cli.test_app import MAIN, _env

pytestmark = pytest.mark.timeout(60)


def _dashboard(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(MAIN), "dashboard", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_it_prints_its_url_serves_runs_and_prices_and_stops_on_a_signal(history, tmp_path, stop):
    process = _dashboard(tmp_path, "--port", "0", "--run-dir", str(history.run_dir), "--pipeline", str(history.pipeline))
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        url = line.split()[1]
        runs = requests.get(url + "runs", timeout=10)
        assert runs.status_code == 200 and runs.text.count('<tr data-run="') == 2
        prices = requests.get(url + "prices", timeout=10)
        assert prices.status_code == 200 and 'id="price-chart"' in prices.text
        assert str(history.store.url.split("///")[1]) in prices.text  # the pipeline's own database
    finally:
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stderr.strip().splitlines()[-1] == "dashboard stopped" and "Traceback" not in stderr


def test_a_taken_port_is_one_line_and_exit_2(history, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _dashboard(tmp_path, "--port", str(port), "--run-dir", str(history.run_dir),
                             "--pipeline", str(history.pipeline))
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stderr.strip() == f"error: the dashboard cannot listen on 127.0.0.1:{port}: the port is in use"


@pytest.mark.parametrize("args, message", [
    (["--pipeline", "no/such.yaml"], "error: no/such.yaml"),
    (["--port", "http"], "argument --port: must be a port number from 0 to 65535, not 'http'"),
    (["--host", "no-such-host.invalid", "--port", "0"], "error: the dashboard cannot listen on no-such-host.invalid:0"),
])
def test_bad_options_are_one_line_and_exit_2(history, tmp_path, args, message):
    if "--pipeline" not in args:
        args = [*args, "--pipeline", str(history.pipeline)]
    process = _dashboard(tmp_path, *args)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2, stderr
    assert message in stderr and "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith(("error", "python main.py"))]) <= 2
