"""The writer's database connections: one engine per database and settings, and a bound on every call.

Server-side timeouts (``statement_timeout``, ``lock_timeout``) end a slow
statement on a live server; libpq's ``connect_timeout`` ends a connection
attempt; TCP keepalives notice a peer that vanished. None of them helps
against a server that is frozen (its processes stopped, a VM paused, a disk
that no longer answers) on a connection already open: nothing answers, and
on a Unix socket (the embedded server) there are no keepalives. So
:func:`bounded` also puts a client-side bound on each use of a connection: one
watchdog thread for the whole process shuts down the socket of a call that
overran, the blocked driver call returns with an error, and the caller's
retries treat it as a lost connection.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from workers.database import mask_url

log = logging.getLogger(__name__)


class DatabaseTimeout(Exception):
    """A database call got no answer within its bound; its connection was cut (retried like a lost one)."""


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long the writer waits on PostgreSQL, in seconds (0 turns a server-side timeout off).

    - ``connect_timeout``: to open a connection (libpq's; it counts in whole seconds, at least 2).
    - ``statement_timeout``: the server cancels a statement that runs longer.
    - ``lock_timeout``: the server cancels a statement that waits this long for a lock.
    - ``attempt_timeout``: the client cuts the connection when one write attempt (all its
      statements and the commit) has not ended after this long, whatever the server does.
    """

    connect_timeout: float = 10.0
    statement_timeout: float = 30.0
    lock_timeout: float = 10.0
    attempt_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "statement_timeout", "lock_timeout", "attempt_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if not self.connect_timeout > 0 or not self.attempt_timeout > 0:
            raise ValueError("connect_timeout and attempt_timeout must be > 0 seconds")

    def connect_args(self) -> dict[str, Any]:
        """psycopg2 (libpq) connection parameters that apply these timeouts."""
        options = []
        if self.statement_timeout:
            options.append(f"-c statement_timeout={_milliseconds(self.statement_timeout)}")
        if self.lock_timeout:
            options.append(f"-c lock_timeout={_milliseconds(self.lock_timeout)}")
        args: dict[str, Any] = {
            # libpq counts whole seconds, at least 2.
            "connect_timeout": max(2, math.ceil(self.connect_timeout)),
            # A TCP peer that vanished is noticed after about 10 + 3 x 5 s idle (ignored on Unix sockets).
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        if options:
            args["options"] = " ".join(options)
        return args


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


_engines: dict[tuple[str, DatabaseTimeouts], Engine] = {}
# Writer threads start together; each URL and settings must get exactly one engine (one pool).
_engines_lock = threading.Lock()


def engine_for(url: str, pool_size: int, timeouts: DatabaseTimeouts) -> Engine:
    """The process-wide engine of ``url`` with ``timeouts``, created on first use (its pool size then wins)."""
    key = (url, timeouts)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            is_postgres = make_url(url).get_backend_name() == "postgresql"
            engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=max(2, pool_size // 2),
                # No pool_pre_ping: a connection left dead by a server restart fails its batch,
                # the pool is invalidated and the batch retried, which costs one retry per
                # restart instead of one extra round trip per batch.
                connect_args=timeouts.connect_args() if is_postgres else {},
            )
            _engines[key] = engine
            log.info("database engine for %s (pool %d)", mask_url(url), pool_size)
        return engine


def live_connection(engine: Engine, seconds: float) -> Connection:
    """A connection of ``engine``'s pool that answers (a ``SELECT 1`` within ``seconds``).

    Pooled connections outlive a database restart (a service runs for days); the first one taken
    after it would fail whatever it is used for. The failed ``SELECT 1`` marks the pool's
    connections invalid, so the one taken instead is new. Errors other than a dead connection
    are raised as they are.
    """
    conn = engine.connect()
    try:
        with bounded(conn, seconds, "checking the connection"):
            conn.exec_driver_sql("SELECT 1")
            conn.rollback()  # the caller begins its own transaction
        return conn
    except DBAPIError as exc:
        conn.close()
        if not exc.connection_invalidated:
            raise
    except BaseException:
        conn.close()
        raise
    return engine.connect()


@contextmanager
def bounded(conn: Connection, seconds: float, what: str) -> Iterator[None]:
    """Cut ``conn``'s socket if the block has not ended after ``seconds``.

    An exception leaving the block after the cut becomes :class:`DatabaseTimeout`
    (``what`` says what was cut short). A connection without a socket (SQLite) is
    not watched.
    """
    fileno = getattr(conn.connection.dbapi_connection, "fileno", None)
    if fileno is None:
        yield
        return
    # Our own duplicate of the socket: the watchdog can never shut down an unrelated socket
    # that reused the number after the driver closed its own.
    sock = socket.socket(fileno=os.dup(fileno()))
    watch = _watchdog.watch(sock, seconds)
    try:
        yield
    except Exception as exc:
        if watch.cut:
            conn.invalidate()  # never hand a cut connection back to the pool
            raise DatabaseTimeout(f"no answer from the database within {seconds:.3g}s ({what}); connection cut") from exc
        raise
    finally:
        _watchdog.unwatch(watch)
        sock.close()


class _Watch:
    __slots__ = ("sock", "deadline", "cut")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.cut = sock, deadline, False


class _Watchdog:
    """One daemon thread for the process, started on first use; it sleeps until the earliest deadline."""

    def __init__(self) -> None:
        # Guards the watch set and the thread's start; the thread waits on it for the next deadline.
        self._changed = threading.Condition()
        self._watches: set[_Watch] = set()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, seconds: float) -> _Watch:
        watch = _Watch(sock, time.monotonic() + seconds)
        with self._changed:
            earliest = min((w.deadline for w in self._watches), default=None)
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()
            elif earliest is None or watch.deadline < earliest:
                self._changed.notify()  # only an earlier deadline changes how long the thread sleeps
        return watch

    def unwatch(self, watch: _Watch) -> None:
        with self._changed:
            self._watches.discard(watch)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for watch in [w for w in self._watches if w.deadline <= now]:
                    self._watches.discard(watch)
                    self._cut(watch)
                earliest = min((w.deadline for w in self._watches), default=None)
                self._changed.wait(None if earliest is None else earliest - now)

    @staticmethod
    def _cut(watch: _Watch) -> None:
        watch.cut = True
        try:
            # Both directions: a blocked receive sees end of file, a blocked send an error.
            watch.sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already closed by the peer: the call is failing anyway
            log.debug("cutting a database connection: %s", exc)
        log.warning("database call overran its bound; connection cut")


# Deliberately process-wide: one thread serves every writer's connections.
_watchdog = _Watchdog()
