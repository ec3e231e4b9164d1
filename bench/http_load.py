"""A cheap HTTP/1.1 load generator: one thread, non-blocking sockets and a selector.

It exists so that a benchmark of the price server measures the server, not the
client: a thread per connection (or ``requests``) costs the client more CPU per
request than the server spends answering it, and on a 2-core machine the two
compete. Here a request is one ``send`` of prepared bytes and its answer one or
two ``recv`` calls and a search for the end of the headers, so the generator's
CPU per request is a small fraction of the server's (both are reported).

Only what the price server answers is understood: a status line, headers with a
``Content-Length``, and that many bytes of body.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from crypto_server.server import raise_open_file_limit

_CONNECTING = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY)
_CONNECT_BATCH = 50


@dataclass
class LoadResult:
    """What one run of the generator saw. Times are seconds from the start of the run."""

    seconds: float  # start to the last answer (or to the end of a timed run)
    answered: int  # answers with status 200
    first_answer: float | None = None
    last_answer: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)  # answers other than 200, by status
    errors: dict[str, int] = field(default_factory=dict)  # connections that failed, by reason
    client_cpu: float = 0.0  # CPU seconds this process spent in the run

    @property
    def failed(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())


class _Conn:
    """One client connection: the request to send and the answer being read."""

    __slots__ = ("sock", "pending", "buffer", "need", "closing", "done")

    def __init__(self, sock: socket.socket, request: bytes) -> None:
        self.sock = sock
        self.pending = request  # bytes still to send
        self.buffer = b""
        self.need = -1  # total length of the answer once its headers are in, -1 before
        self.closing = False  # the answer said Connection: close
        self.done = 0  # answers received on this connection

    def answer(self) -> int | None:
        """The status of the answer in the buffer once it is complete (and drop it), else None."""
        if self.need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = self.buffer[:end].lower()
            at = head.find(b"\ncontent-length:")
            length = int(head[at + 16 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            self.need = end + 4 + length
            self.closing = b"\nconnection: close" in head
        if len(self.buffer) < self.need:
            return None
        status = int(self.buffer[9:12])
        self.buffer, self.need = self.buffer[self.need :], -1
        self.done += 1
        return status


def _reason(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def run_load(
    host: str,
    port: int,
    path: str,
    *,
    connections: int,
    requests_per_connection: int = 1,
    duration: float | None = None,
    timeout: float = 30.0,
) -> LoadResult:
    """Open ``connections`` sockets (50 at a time, serving those ready in between) and send
    ``GET path`` on each as soon as it connects.

    Each connection sends its next request when the previous answer is complete
    (keep-alive), ``requests_per_connection`` in all, or until ``duration``
    seconds have passed if given; with ``requests_per_connection=1`` each
    connection asks ``Connection: close`` and ends after its answer, so every
    request costs the server an accept. A server that closes connections after
    each answer (werkzeug's) gets a new connection for the next request. The run
    gives up on what is still open after ``timeout`` seconds.
    """
    raise_open_file_limit(connections + 64)
    keep_alive = requests_per_connection > 1 or duration is not None
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    selector = selectors.DefaultSelector()
    result = LoadResult(seconds=0.0, answered=0)
    cpu0 = time.process_time()
    start = time.perf_counter()
    stop_sending = start + duration if duration is not None else None
    deadline = start + timeout

    def count(table: dict, key: Any) -> None:
        table[key] = table.get(key, 0) + 1

    def close(conn: _Conn, failure: str | None = None) -> None:
        if failure is not None:
            count(result.errors, failure)
        selector.unregister(conn.sock)
        conn.sock.close()

    def connect(done: int = 0) -> None:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((host, port))
        conn = _Conn(sock, request)
        conn.done = done
        selector.register(sock, selectors.EVENT_WRITE, conn)
        if code not in (0, *_CONNECTING):
            close(conn, errno.errorcode.get(code, str(code)))

    def send(conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.pending)
        except OSError as exc:
            close(conn, _reason(exc))
            return
        conn.pending = conn.pending[sent:]
        selector.modify(conn.sock, selectors.EVENT_WRITE if conn.pending else selectors.EVENT_READ, conn)

    to_open = connections
    while to_open or selector.get_map():
        # Connections are opened a batch at a time, with the sockets ready in between served
        # at once: the first requests go out while the last connections are still being made,
        # as they would from many clients.
        for _ in range(min(to_open, _CONNECT_BATCH)):
            connect()
        to_open -= min(to_open, _CONNECT_BATCH)
        now = time.perf_counter()
        if now >= deadline:
            for key in list(selector.get_map().values()):
                close(key.data, "timeout")
            break
        for key, events in selector.select(0 if to_open else min(deadline - now, 1.0)):
            conn = key.data
            if events & selectors.EVENT_WRITE:
                send(conn)
                continue
            try:
                data = conn.sock.recv(65536)
            except OSError as exc:
                close(conn, _reason(exc))
                continue
            if not data:
                close(conn, "closed by the server")
                continue
            conn.buffer += data
            status = conn.answer()
            if status is None:
                continue
            elapsed = time.perf_counter() - start
            if result.first_answer is None:
                result.first_answer = elapsed
            result.last_answer = elapsed
            if status == 200:
                result.answered += 1
            else:
                count(result.statuses, status)
            if stop_sending is None:
                more = conn.done < requests_per_connection
            else:
                more = time.perf_counter() < stop_sending
            if not more:
                close(conn)
            elif conn.closing:
                close(conn)
                connect(conn.done)
            else:
                conn.pending = request
                send(conn)
    selector.close()
    result.seconds = time.perf_counter() - start
    result.client_cpu = time.process_time() - cpu0
    return result
