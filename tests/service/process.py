"""A ``python main.py`` service process for tests: its stderr read as it comes, waited on by pattern."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.service.conftest import MAIN, cli_env


class ServiceProcess:
    """``python main.py ARGS`` in ``cwd``; :meth:`wait_for` blocks until a stderr line contains a text."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(MAIN), *args], cwd=cwd, env=env or cli_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()  # guards lines: the reader thread appends, the test waits
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stdout = ""

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    def count(self, text: str) -> int:
        with self._changed:
            return sum(text in line for line in self.lines)

    def wait_for(self, text: str, times: int = 1, timeout: float = 30.0) -> str:
        """The ``times``-th stderr line holding ``text``; AssertionError if output ends or time runs out first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= times:
                    return found[times - 1]
                if self.lines and self.lines[-1] == "" or time.monotonic() > deadline:
                    raise AssertionError(f"no {times} line(s) with {text!r} in:\n" + "".join(self.lines))
                self._changed.wait(0.1)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the exit; its code (stdout is then in :attr:`stdout`)."""
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def stderr(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
