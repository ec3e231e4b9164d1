"""The services a benchmark talks to: the bundled price server and an embedded PostgreSQL.

Both are context managers that stop what they started on the way out, whether
the block ends normally, on an error or on Ctrl+C.

The price server runs in a child process (``python -m bench.server_process``,
which calls ``crypto_server.serve_in_background`` there), as a real server
would: sharing the benchmark's interpreter would make client and server compete
for one GIL, and the figures would measure that contention rather than the
pipeline. Its request counters are asked for over the child's stdin/stdout.
"""

from __future__ import annotations

import json
import logging
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0  # seconds for the server process to build its data and listen
STOP_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0


class ServerProcess:
    """A handle on the price server running in a child process (see :mod:`bench.server_process`)."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def _call(self, command: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return _read_answer(self.process, CALL_TIMEOUT, command)

    def stats(self) -> dict[str, int]:
        """The server's request counters (``requests``, ``in_flight``, ``peak_in_flight``...)."""
        return self._call("stats")

    def reset_stats(self) -> None:
        self._call("reset")


def _read_answer(process: subprocess.Popen[str], timeout: float, what: str) -> Any:
    """One JSON line from the child, or an error saying why there is none.

    The child writes exactly one line per command, so nothing is ever left
    buffered between calls and waiting on the pipe itself is safe.
    """
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    if not readable:
        raise TimeoutError(f"the price server did not answer {what!r} within {timeout:g}s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the price server process ended (exit code {process.poll()}); see its messages above")
    return json.loads(line)


def _stop_process(process: subprocess.Popen[str]) -> None:
    """Ask the child to stop (close its stdin), then insist. Never raises."""
    try:
        if process.stdin is not None:
            process.stdin.close()
    except OSError:
        pass  # already gone
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("price server process %s did not stop; killing it", process.pid)
        process.kill()
        process.wait(STOP_TIMEOUT)
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def price_server(*, sleep: float = 0.0, jitter: float = 0.0, seed: int = 0) -> Iterator[ServerProcess]:
    """The bundled price server in a child process for the block, with this latency and seed."""
    command = [
        sys.executable, "-m", "bench.server_process", "--sleep", repr(sleep), "--jitter", repr(jitter),
        "--seed", str(seed),
    ]  # fmt: skip
    # stderr is inherited: the child's warnings appear with the benchmark's log.
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        ready = _read_answer(process, START_TIMEOUT, "start")
        server = ServerProcess(process, ready["url"])
        log.info("price server %s in process %s (sleep %gs, jitter %gs)", server.url, process.pid, sleep, jitter)
        yield server
    finally:
        _stop_process(process)
        log.info("price server stopped")


@contextmanager
def embedded_database() -> Iterator[str]:
    """An embedded PostgreSQL in a fresh temporary directory for the block; yields its URL.

    The server is stopped and its directory deleted at the end.
    """
    from workers.database import EmbeddedPostgres

    # A short path under /tmp keeps the Unix socket path under its length limit.
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    server = EmbeddedPostgres(root / "pgdata", cleanup_mode="stop")  # stop at exit too, as a safety net
    try:
        url = server.start()
        log.info("embedded PostgreSQL in %s", root)
        yield url
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
        log.info("embedded PostgreSQL stopped and deleted")


def empty_prices(url: str) -> None:
    """Empty the ``prices`` table if it exists, so every measurement inserts fresh rows."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if inspect(conn).has_table("prices"):
                conn.execute(text("TRUNCATE prices"))
    finally:
        engine.dispose()


def count_prices(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM prices")).scalar_one())
    finally:
        engine.dispose()


def libpq_params(url: str) -> dict[str, Any]:
    """``psycopg2.connect`` keyword arguments for a SQLAlchemy URL (host may be a socket directory)."""
    parsed = make_url(url)
    params: dict[str, Any] = {
        "dbname": parsed.database,
        "user": parsed.username,
        "host": parsed.host or parsed.query.get("host"),
    }
    if parsed.password:
        params["password"] = parsed.password
    if parsed.port:
        params["port"] = parsed.port
    return {k: v for k, v in params.items() if v is not None}
