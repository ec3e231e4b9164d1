"""The server in a child process of its own, driven over the child's stdin and stdout.

A server sharing its client's interpreter competes with it for one GIL; in a child
process it does not. ``start_server_process()`` (the parent's side) runs
``python -m crypto_server --child --port 0 ...`` and returns once the child listens.

The protocol is one JSON object per line. Once listening, the child writes
``{"url": ..., "pid": ...}``; then it answers each line ``stats`` or ``reset`` read
from its stdin with one line. When its stdin reaches end of file it stops serving
and exits: that happens when the parent closes the pipe (``ServerProcess.stop()``)
and also when the parent ends in any other way, SIGKILL and ``os._exit`` included,
because the kernel closes a dead process's descriptors. (Python creates the pipe
non-inheritable, so no other child of the parent holds it open.)

The child runs in a session of its own, so a Ctrl+C typed in the terminal reaches
only the parent, which decides when its server stops (after its clients are done).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import ServerHandle

_log = logging.getLogger("crypto_server")

START_TIMEOUT = 60.0  # seconds for the child to build its data and listen (~0.5 s usually)
STOP_TIMEOUT = 5.0  # seconds for the child to exit after its stdin closed, before it is killed
CALL_TIMEOUT = 10.0  # seconds for the child to answer a command

# The directory holding the crypto_server package: the child must import it whatever its cwd.
_IMPORT_ROOT = str(Path(__file__).resolve().parent.parent)


class ServerProcessError(RuntimeError):
    """The server process did not start, or stopped answering; the message is one line."""


class ServerProcess:
    """A running server process. ``stop()`` (or leaving the ``with`` block) ends it.

    ``url`` has no trailing slash; ``pid`` is the child's process id.
    """

    def __init__(self, process: subprocess.Popen[str], answers: queue.Queue[str | None], ready: dict[str, Any]):
        self._process = process
        self._answers = answers
        self.url: str = ready["url"]
        self.pid: int = process.pid
        # Serialises commands: each is one line out and one line back on the shared pipes.
        self._call_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stats(self) -> dict[str, Any]:
        """The request counters (``requests``, ``in_flight``, ``peak_in_flight``, ``errors_injected``,
        ``rate_limited``) and ``cpu_seconds``, the CPU time the server has used so far (all its
        serving processes: see ``processes``)."""
        return self._call("stats")

    def reset_stats(self) -> None:
        """Zero the request counters."""
        self._call("reset")

    def stop(self) -> None:
        """Close the child's stdin, wait for it to exit, kill it if it does not. Idempotent; never raises."""
        _stop(self._process)

    def _call(self, command: str) -> Any:
        with self._call_lock:
            try:
                assert self._process.stdin is not None
                self._process.stdin.write(command + "\n")
                self._process.stdin.flush()
            except (OSError, ValueError):  # ValueError: the pipe was closed by stop()
                raise ServerProcessError(f"the price server process {self.pid} has ended") from None
            return _answer(self._process, self._answers, CALL_TIMEOUT, command)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServerProcess {self.url} pid {self.pid} {'running' if self.running else 'ended'}>"


def start_server_process(
    *, host: str = "127.0.0.1", start_timeout: float = START_TIMEOUT, **options: Any
) -> ServerProcess:
    """Start the server in a child process on a free port of ``host``; return once it listens.

    ``options`` are the command-line options of ``python -m crypto_server`` as keywords
    (``sleep``, ``jitter``, ``error_rate``, ``rate_limit``, ``seed``, ``assets``,
    ``first_day``, ``last_day``, ``data_dir``, ``server``, ``processes``); None leaves
    one at its default (for ``server``: gevent where it is installed, else werkzeug; for
    ``processes``: one per core, at most 2, with gevent). The
    child's warnings go to this process's stderr. Raises :class:`ServerProcessError`
    if the child cannot start (bad option, bad data, no port) within ``start_timeout``
    seconds; nothing is left running then.
    """
    command = [sys.executable, "-m", "crypto_server", "--child", "--host", host, "--port", "0"]
    for name, value in options.items():
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": _IMPORT_ROOT + (os.pathsep + path if path else "")}
    try:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            **_own_session(),
        )  # fmt: skip
    except OSError as exc:
        raise ServerProcessError(f"cannot start {sys.executable}: {exc.strerror or exc}") from None
    answers: queue.Queue[str | None] = queue.Queue()
    threading.Thread(
        target=_read_lines, args=(process.stdout, answers), name=f"crypto_server-{process.pid}", daemon=True
    ).start()
    try:
        ready = _answer(process, answers, start_timeout, "start")
    except BaseException:  # Ctrl+C while waiting included: never leave the child behind
        _stop(process)
        raise
    return ServerProcess(process, answers, ready)


def serve_for_parent(
    handle: ServerHandle,
    commands: IO[str] | None = None,
    answers: IO[str] | None = None,
    cpu_seconds: Callable[[], float] = time.process_time,
) -> None:
    """The child's side: announce ``handle.url``, answer commands until ``commands`` ends, then stop.

    ``commands`` and ``answers`` default to stdin and stdout; ``cpu_seconds`` is the
    server's CPU time so far (that of every serving process). Called by
    ``python -m crypto_server --child``.
    """
    commands = sys.stdin if commands is None else commands
    answers = sys.stdout if answers is None else answers
    try:
        _send(answers, {"url": handle.url, "pid": os.getpid()})
        for line in commands:  # ends when the parent closes the pipe, or dies
            command = line.strip()
            if command == "stats":
                _send(answers, {**handle.stats.snapshot(), "cpu_seconds": round(cpu_seconds(), 3)})
            elif command == "reset":
                handle.stats.reset()
                _send(answers, {})
            else:
                _send(answers, {"error": f"unknown command {command!r}"})
    except BrokenPipeError:  # the parent is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), answers.fileno())  # so the flush at exit cannot fail again
    finally:
        handle.stop()


def _send(stream: IO[str], answer: dict[str, Any]) -> None:
    stream.write(json.dumps(answer) + "\n")
    stream.flush()


def _own_session() -> dict[str, Any]:
    """Popen keywords that keep the terminal's Ctrl+C away from the child."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _read_lines(stream: IO[str], answers: queue.Queue[str | None]) -> None:
    """Move the child's stdout lines to ``answers`` (a thread: a pipe cannot be waited on portably)."""
    try:
        for line in stream:
            answers.put(line)
    except (OSError, ValueError):
        pass  # the pipe was closed under us
    finally:
        stream.close()
        answers.put(None)


def _answer(process: subprocess.Popen[str], answers: queue.Queue[str | None], timeout: float, what: str) -> Any:
    """The child's next JSON line, or ServerProcessError saying why there is none."""
    try:
        line = answers.get(timeout=timeout)
    except queue.Empty:
        raise ServerProcessError(
            f"the price server process {process.pid} did not answer {what!r} within {timeout:g}s"
        ) from None
    if line is None:
        try:
            code = process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        raise ServerProcessError(
            f"the price server process ended (exit code {code}) before answering {what!r}; see its message above"
        )
    try:
        answer = json.loads(line)
    except ValueError:
        raise ServerProcessError(f"the price server process wrote {line[:80]!r} instead of a JSON answer") from None
    if "error" in answer:
        raise ServerProcessError(f"the price server process: {answer['error']}")
    return answer


def _stop(process: subprocess.Popen[str]) -> None:
    """Close the child's stdin (its signal to stop), wait, and kill it if it does not go. Never raises."""
    try:
        if process.stdin is not None:
            process.stdin.close()
    except OSError:
        pass  # already gone
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _log.warning("price server process %s did not stop; killing it", process.pid)
        process.kill()
        process.wait()
