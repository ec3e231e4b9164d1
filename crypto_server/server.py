"""A real HTTP server for the app: in a background thread, or in the foreground for the CLI.

Two WSGI servers serve the same app: werkzeug's threaded server (a thread per
connection, one request per connection: the default of the Python API, which
needs nothing but Flask) and gevent's (a greenlet per connection, keep-alive:
see :mod:`crypto_server.cooperative`), which ``python -m crypto_server`` and
``start_server_process()`` use where gevent is installed.
"""

from __future__ import annotations

import _thread
import logging
import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .app import CryptoServerApp, create_app
from .data import Dataset
from .load import load_dataset
from .faults import Faults, Stats

_log = logging.getLogger("crypto_server")

# Werkzeug listens with a backlog of 128; a benchmark opens 5,000 connections at once.
# Linux caps it at net.core.somaxconn (4096 by default since 5.4), other systems lower.
_BACKLOG = 4096
# How often serve_forever checks for stop(); it bounds how long stop() takes.
_POLL_INTERVAL = 0.05
# A client that connects and then says nothing must not hold a thread forever.
_IDLE_TIMEOUT = 60.0


class _RequestHandler(WSGIRequestHandler):
    timeout: float = _IDLE_TIMEOUT  # _bind sets the one in force

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug('%s "%s" %s %s', self.address_string(), self.requestline, code, size)

    def log(self, type: str, message: str, *args: Any) -> None:
        # Werkzeug's own logger would add a handler to itself and print at INFO level.
        # Errors here are a client's doing (a malformed request line, say).
        _log.log(logging.WARNING if type == "error" else logging.DEBUG, message.rstrip(), *args)


class _Server(ThreadedWSGIServer):
    def log(self, type: str, message: str, *args: Any) -> None:
        _log.log(logging.ERROR if type == "error" else logging.DEBUG, message, *args)

    def process_request(self, request: Any, client_address: Any) -> None:
        # threading.Thread.start() waits until the new thread has run, and under a burst that
        # wait (for the GIL) stalls the accept loop: 500 requests at sleep=1 took ~3 s instead
        # of ~1.5 s. A raw thread starts without that handshake and, like a daemon thread,
        # never holds up interpreter exit, nor server_close(). process_request_thread always
        # closes the connection.
        _thread.start_new_thread(self.process_request_thread, (request, client_address))

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.exception("error while handling a request from %s", client_address)


SERVERS = ("gevent", "werkzeug")


def gevent_available() -> bool:
    """Whether the gevent server can be used here (gevent is installed)."""
    try:
        import gevent.pywsgi  # noqa: F401
    except ImportError:
        return False
    return True


def _bind(app: Any, host: str, port: int, server: str = "werkzeug", reuse_port: bool = False) -> Any:
    """A WSGI server (``"werkzeug"`` or ``"gevent"``) listening on host:port (0 picks a free port).

    ``reuse_port``: with SO_REUSEPORT, so that more servers can listen on the same port
    and the kernel spreads connections between them (see :mod:`crypto_server.siblings`).

    Raises ``OSError`` with a one-line message such as
    ``cannot listen on 127.0.0.1:5000: address already in use``, ``ImportError``
    for ``"gevent"`` when gevent is not installed, ``ValueError`` for another name.
    """
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    if server == "gevent":
        from .cooperative import CooperativeServer  # imports gevent, so only when asked for

        return CooperativeServer(app, _listen(host, port, reuse_port), _IDLE_TIMEOUT)
    sock = _listen(host, port, reuse_port)
    handler = type("RequestHandler", (_RequestHandler,), {"timeout": _IDLE_TIMEOUT})
    try:
        return _Server(host, port, app, handler=handler, fd=sock.fileno())
    finally:
        sock.close()  # werkzeug works on a duplicate of the descriptor


def raise_open_file_limit(wanted: int = 65536) -> None:
    """Raise this process's soft limit of open files towards ``wanted`` (never past the hard limit).

    A server holding thousands of connections needs a descriptor for each; the usual
    soft limit is 1024. A no-op where there is no such limit (Windows).
    """
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):  # macOS refuses some values below the hard limit
            _log.debug("cannot raise the open file limit from %s to %s", soft, target)


def _listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A socket listening on host:port, or ``OSError`` with a one-line message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # Bound here rather than by werkzeug, which prints and calls sys.exit() on failure.
        sock = socket.create_server((host, port), family=family, backlog=_BACKLOG, reuse_port=reuse_port)
    except OSError as exc:
        # create_server() appends "(while attempting to bind ...)"; the errno says it shorter.
        # Resolver errors have negative errnos, so keep their own text.
        if exc.errno and exc.errno > 0:
            reason = os.strerror(exc.errno).lower()
        else:
            reason = (exc.strerror or str(exc)).split(" (while attempting")[0]
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {reason}") from None
    except OverflowError:
        raise OSError(None, f"cannot listen on {host}:{port}: port out of range") from None
    return sock


class ServerHandle:
    """A running background server. ``stop()`` (or leaving the ``with`` block) shuts it down.

    ``url`` has no trailing slash. ``stats``, ``faults`` and ``set_faults()`` are the
    app's (see :class:`CryptoServerApp`).
    """

    def __init__(self, app: CryptoServerApp, server: Any) -> None:
        self.app = app
        self._server = server
        self.host: str = server.host
        self.port: int = server.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=f"crypto_server:{self.port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.serve_forever(poll_interval=_POLL_INTERVAL)
        except Exception:  # logged, so the thread never dies silently
            _log.exception("crypto_server on %s stopped on an error", self.url)

    @property
    def dataset(self) -> Dataset:
        return self.app.dataset

    @property
    def stats(self) -> Stats:
        return self.app.stats

    @property
    def faults(self) -> Faults:
        return self.app.faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change fault injection while serving, e.g. ``set_faults(error_rate=0.2, sleep=0)``."""
        return self.app.set_faults(**changes)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def stop(self) -> None:
        """Stop accepting connections, free the port and join the server thread. Idempotent.

        With werkzeug, requests already being handled finish in their own threads, which
        never hold up interpreter exit. With gevent, they get up to a second to finish
        before their connections are closed; idle keep-alive connections are closed at once.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            if self._thread.is_alive():
                self._server.shutdown()  # returns once serve_forever has left its loop
            self._server.server_close()
            self._thread.join()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServerHandle {self.url} {'running' if self.running else 'stopped'}>"


def serve_in_background(
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    data_dir: str | Path | None = None,
    server: str = "werkzeug",
    **options: Any,
) -> ServerHandle:
    """Start the server on a real socket in a background thread and return its handle.

    ``port=0`` picks a free port (see ``handle.url``). ``options`` are the keywords
    of :func:`create_app` (``dataset``, ``sleep``, ``jitter``, ``error_rate``,
    ``rate_limit``, ``seed``, ``assets``); ``data_dir`` loads Cryptowatch CSV files
    instead of the synthetic data. ``server="gevent"`` serves with gevent (keep-alive,
    a greenlet per connection) instead of werkzeug's threaded server, without
    monkey patching anything. Raises ``OSError`` if the address cannot be bound,
    ``DataError``/``ValueError`` on bad data or options, ``ImportError`` if gevent
    is asked for and not installed.
    """
    if data_dir is not None:
        if options.get("dataset") is not None:
            raise ValueError("pass either dataset or data_dir, not both")
        options["dataset"] = load_dataset(data_dir)
    app = create_app(**options)
    handle = ServerHandle(app, _bind(app, host, port, server))  # type: ignore[arg-type]
    _log.debug("serving %r on %s", app.dataset, handle.url)
    return handle
