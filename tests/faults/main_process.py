"""``python main.py`` in a child process, for tests that signal it or read what it left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import REPO

MAIN = REPO / "main.py"


class Run:
    """``python main.py ARGS --no-progress`` in ``cwd``, with the test server and database."""

    def __init__(self, args: list[str], cwd: Path, server_url: str, database_url: str) -> None:
        env = dict(os.environ, PRICE_SERVER_URL=server_url, DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
        self.cwd = cwd
        self.process = subprocess.Popen(
            [sys.executable, str(MAIN), *args, "--no-progress", "--log-level", "INFO"],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.output = ""

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        try:
            self.output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output, _ = self.process.communicate()
            pytest.fail(f"main.py did not end within {timeout}s:\n{self.output[-3000:]}")
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()

    def report(self) -> dict[str, Any]:
        (path,) = self.cwd.glob("runs/*/report.json")
        return json.loads(path.read_text())

    def dead_letter_path(self) -> Path:
        path = Path(self.report()["dead_letter_path"])
        return path if path.is_absolute() else self.cwd / path


@pytest.fixture
def main_process(tmp_path: Path):
    """``main_process(args, server_url, database_url)``: a :class:`Run` in a fresh directory, killed at the end."""
    runs: list[Run] = []

    def start(args: list[str], server_url: str, database_url: str) -> Run:
        cwd = tmp_path / f"cwd{len(runs)}"
        cwd.mkdir()
        runs.append(Run(args, cwd, server_url, database_url))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()
