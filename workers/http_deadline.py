"""urllib3 connection pools whose every socket wait is bounded by one deadline per request.

A socket timeout bounds each receive, not a response: a server sending one byte
of its headers every few seconds never trips it. Here, before every receive
(and before connecting and sending), the socket's timeout is set to the time
the request has left, capped by the per-read timeout. Once the deadline has
passed, the next wait fails at once. No thread or timer is involved: the cost
is a clock read and a ``settimeout`` per receive.

:class:`workers.http.HttpClient` builds its pools from :class:`HTTPConnectionPool`
and :class:`HTTPSConnectionPool` here (or binds a proxy manager's with
:func:`bind_deadline`); the rest carries its :class:`Deadline` down to the sockets.
"""

from __future__ import annotations

import http.client
import io
import math
import socket
import time
from functools import partial
from typing import Any

from urllib3 import connectionpool, poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError

from workers.http_wire import HTTPResponse


class Deadline:
    """When the request in progress must be over (``math.inf``: no request in progress).

    One per client, and a client serves one thread, so it needs no lock.
    """

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = math.inf

    def start(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def clear(self) -> None:
        self.at = math.inf

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def wait_limit(self, cap: float | None) -> float:
        """How long the next blocking call may wait: the time left, at most ``cap``.

        Raises ``TimeoutError`` (``socket.timeout``) when no time is left.
        """
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's deadline has passed")
        return left if cap is None or left < cap else cap


def bind_deadline(manager: poolmanager.PoolManager, deadline: Deadline) -> poolmanager.PoolManager:
    """Make the pools ``manager`` builds (direct or through an HTTP proxy) honour ``deadline``; return it.

    Only managers with urllib3's stock pools: a SOCKS manager keeps its own (and per-read timeouts).
    """
    if manager.pool_classes_by_scheme is poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = {
            "http": partial(HTTPConnectionPool, deadline=deadline),
            "https": partial(HTTPSConnectionPool, deadline=deadline),
        }
    return manager


class _DeadlineConnection:
    """Mixin for urllib3's connections: connect, send and every receive end by the deadline.

    Pools pass their extra keyword arguments to the connection, ``deadline`` among them.
    """

    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def _new_conn(self) -> socket.socket:
        # urllib3 sets self.timeout to the connect timeout just before connecting.
        try:
            self.timeout = self._deadline.wait_limit(self.timeout)  # type: ignore[has-type]
        except TimeoutError:
            raise ConnectTimeoutError(self, f"no time left to connect to {self.host}") from None  # type: ignore[attr-defined]
        return super()._new_conn()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # type: ignore[attr-defined]
            # A kept-alive socket still has the timeout of its last receive; a new one connects in here.
            self.sock.settimeout(self._deadline.wait_limit(self.timeout))  # type: ignore[attr-defined]
        super().request(*args, **kwargs)  # type: ignore[misc]

    def response_class(self, sock: socket.socket, *args: Any, **kwargs: Any) -> http.client.HTTPResponse:
        """http.client builds the response with ``self.response_class(sock, ...)``: read it through the deadline."""
        return HTTPResponse(DeadlineSocket(sock, self._deadline), *args, **kwargs)


class DeadlineSocket:
    """What ``http.client.HTTPResponse`` uses of a socket (``makefile``), its reads bounded by a deadline.

    Give it to ``HTTPResponse`` in place of the socket: the status line, headers and body
    then all arrive before ``deadline.at``, however slowly the peer trickles them.
    """

    __slots__ = ("_sock", "_deadline")

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _DeadlineReader(io.RawIOBase):
    """A socket's byte stream; each receive waits at most the per-read timeout and the time left."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)  # holds the socket open until closed, as http.client expects
        self._deadline = deadline
        self._per_read = sock.gettimeout()  # urllib3 sets the read timeout just before the response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._deadline.wait_limit(self._per_read))
        return self._raw.readinto(buffer)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _HTTPConnection(_DeadlineConnection, HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, HTTPSConnection):
    pass


# urllib3's names: its error messages name the pool's class ("HTTPConnectionPool(host=...): ...").
class HTTPConnectionPool(connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class HTTPSConnectionPool(connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection
