"""The fast server: gevent's WSGI server, one greenlet per connection, keep-alive, no monkey patching.

A thread per connection costs the server more CPU than answering does, and a
burst of thousands of connections then waits on thread start-up; greenlets
cost a few kilobytes and microseconds each. Nothing is monkey patched: the
server runs in a thread of its own with its own gevent hub, and the fault
layer learns from the WSGI environ (``crypto_server.sleep``) to wait with
``gevent.sleep``, the one blocking call on the request path. The locks of the
counters and the rate limiter are held only for a few instructions with
nothing that could switch greenlets inside, so real thread locks are right.

The Python API serves with werkzeug by default; ``python -m crypto_server``
and ``start_server_process()`` use this server where gevent is installed.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from gevent import get_hub
from gevent import sleep as _cooperative_sleep
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIHandler, WSGIServer

from .faults import SLEEP_KEY
from .request_headers import RequestHeaders

_log = logging.getLogger("crypto_server")

# How long stop() lets requests in flight finish; idle keep-alive connections are closed at once.
_STOP_GRACE = 1.0


class _Handler(WSGIHandler):
    """One connection. Idle for ``idle_timeout`` seconds (before or between requests): closed."""

    idle_timeout: float = 60.0
    MessageClass = RequestHeaders  # pywsgi's own runs the email parser: a tenth of the CPU per request

    def __init__(self, sock: Any, address: Any, server: _GeventWSGIServer) -> None:
        # Without TCP_NODELAY the last piece of an answer larger than a segment (the wiki
        # page) waits ~40 ms for the client's delayed ACK on a keep-alive connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.idle_timeout)
        super().__init__(sock, address, server)

    def handle(self) -> None:
        rfile = self.rfile
        try:
            super().handle()
        finally:
            # pywsgi drops its reader without closing it, which keeps the socket open until the
            # garbage collector runs, maybe after the hub is gone ("operation on destroyed loop").
            rfile.close()

    # pywsgi sends the headers and the body in two calls; joining them saves a system call
    # and a packet per answer, for the client too. _held is the header block on its way.
    _hold = False
    _held: bytes | None = None

    def _write_with_headers(self, data: bytes) -> None:
        self._hold = True
        try:
            super()._write_with_headers(b"")  # builds the headers and "sends" them: held
        finally:
            self._hold = False
        # Logged before the answer leaves, as werkzeug does: a client that has its answer
        # can count on the line being there.
        self._log_line(self._orig_status or "-")
        self._write(data)  # the body (chunk-framed if need be), sent with the headers
        if self._held is not None:  # no body (204, HEAD): the headers alone
            self._sendall(b"")

    def _sendall(self, data: bytes) -> None:
        if self._hold:
            self._held = bytes(data)
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        # One send() moves a small answer whole; gevent's sendall() would first ask the socket
        # its buffer size, a system call per answer. The rest (or an error) goes the usual way.
        try:
            sent = self.socket.send(data)
        except OSError:
            sent = 0
        self.response_length += sent
        if sent < len(data):
            super()._sendall(data[sent:])

    def run_application(self) -> None:
        server: _GeventWSGIServer = self.server  # type: ignore[assignment]
        server.busy += 1
        try:
            super().run_application()
        finally:
            server.busy -= 1

    _logged = False  # this request's line is written

    def log_request(self) -> None:
        # Called once the answer is sent; only pywsgi's own error answers (400, 414) are not
        # logged by then.
        if not self._logged:
            self._log_line(self.status if isinstance(self.status, str) else "-")
        self._logged = False

    def _log_line(self, status: str) -> None:
        self._logged = True
        if _log.isEnabledFor(logging.DEBUG):  # the line werkzeug's server logs
            address = self.client_address[0] if isinstance(self.client_address, tuple) else self.client_address
            _log.debug('%s "%s" %s -', address, self.requestline, status.split()[0])

    def log_error(self, msg: str, *args: Any) -> None:
        # A client's doing (a malformed request line, say), as with werkzeug.
        _log.warning("%s", msg % args if args else msg)

    def _log_error(self, t: Any, v: Any, tb: Any) -> None:
        _log.error("error while handling a request from %s", self.client_address, exc_info=(t, v, tb))


class _GeventWSGIServer(WSGIServer):
    handler_class = _Handler
    busy = 0  # requests being answered now (idle connections excluded); only the hub's thread touches it


class CooperativeServer:
    """The gevent server with the interface ServerHandle drives: host, port and serve_forever
    in one thread, shutdown and server_close from another.

    ``sock`` is a bound, listening socket; it is owned (and closed) from here on.
    """

    def __init__(self, app: Any, sock: socket.socket, idle_timeout: float) -> None:
        self.app = app
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self._idle_timeout = idle_timeout
        # Guards _loop, _stop_requested and _stopping, shared by the hub's thread and shutdown().
        self._lock = threading.Lock()
        self._loop: Any = None
        self._stop_requested: Event | None = None
        self._stopping = False
        self._done = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve in this thread until ``shutdown()``; ``poll_interval`` is unused (stop is a wake-up)."""
        handler = type("Handler", (_Handler,), {"idle_timeout": self._idle_timeout})
        hub = get_hub()  # this thread's own hub: a server built in another thread would use that one's
        try:
            with self._lock:
                if self._stopping:
                    return
                self._sock.setblocking(False)  # gevent accepts until the queue is empty
                wsgi = _GeventWSGIServer(
                    self._sock, self._with_sleep, spawn=Pool(), handler_class=handler, log=None, error_log=None
                )
                self._stop_requested = Event()
                self._loop = hub.loop
            wsgi.start()
            self._stop_requested.wait()
            wsgi.close()  # no new connections
            deadline = time.monotonic() + _STOP_GRACE
            while wsgi.busy and time.monotonic() < deadline:
                _cooperative_sleep(0.01)
            wsgi.stop(timeout=0)  # closes idle keep-alive connections and what is still running
        finally:
            with self._lock:
                self._loop = None
            hub.destroy(destroy_loop=True)
            self._done.set()

    def shutdown(self) -> None:
        """Stop serving and wait until ``serve_forever`` has returned. Safe from any thread.

        Requests in flight get up to a second to finish; idle connections are closed at once.
        """
        with self._lock:
            self._stopping = True
            loop = self._loop
            if loop is not None:
                loop.run_callback_threadsafe(self._stop_requested.set)
        if loop is not None:
            self._done.wait()

    def server_close(self) -> None:
        """Free the port (also when ``serve_forever`` never ran)."""
        self._sock.close()

    def _with_sleep(self, environ: dict, start_response: Any) -> Any:
        environ[SLEEP_KEY] = _cooperative_sleep
        return self.app(environ, start_response)
