"""The dashboard's HTTP server: werkzeug's threaded server on a thread of its own."""

from __future__ import annotations

import errno
import logging
import socket
import threading
from types import TracebackType

import flask
from werkzeug.serving import BaseWSGIServer, make_server

log = logging.getLogger(__name__)

DEFAULT_PORT = 8050
"""The port the dashboard listens on unless told otherwise (another free one if it is taken)."""


class DashboardError(Exception):
    """The dashboard cannot listen where it was asked to (one line, for the user)."""


class DashboardServer:
    """Serves ``app`` at ``host:port`` (port 0: a free port the system picks) from a background thread.

    The socket is bound here, so :attr:`url` is known and a port in use is reported
    (:class:`DashboardError`) before anything starts. Each request gets a thread; ``stop()``
    ends the server and frees the port at once.
    """

    def __init__(self, app: flask.Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        # Bound here, not by werkzeug: on failure it prints and calls sys.exit().
        try:
            sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        except (OSError, OverflowError) as exc:
            reason = "the port is in use" if getattr(exc, "errno", None) == errno.EADDRINUSE else \
                str(getattr(exc, "strerror", None) or exc).split(" (while attempting")[0]
            raise DashboardError(f"the dashboard cannot listen on {_netloc(host, port)}: {reason}") from None
        try:
            self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, fd=sock.fileno())
        finally:
            sock.close()  # werkzeug works on a duplicate of the descriptor
        self._server.daemon_threads = True  # a browser's open keep-alive connection must not hold up stop()
        self.host = host
        self.port = self._server.port
        self.url = f"http://{_netloc(host, self.port)}/"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="dashboard", daemon=True)

    def start(self) -> None:
        """Start answering requests (returns at once)."""
        self._thread.start()
        log.debug("dashboard at %s", self.url)

    def stop(self) -> None:
        """Stop answering and close the socket; returns when the server thread has ended."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> DashboardServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def start_dashboard(app: flask.Flask, host: str = "127.0.0.1", port: int | None = None) -> DashboardServer:
    """A started :class:`DashboardServer`. ``port=None`` means :data:`DEFAULT_PORT`, or a free port when
    that one is taken; an explicit port that is taken raises :class:`DashboardError`."""
    if port is None:
        try:
            server = DashboardServer(app, host, DEFAULT_PORT)
        except DashboardError:
            log.info("port %d is taken; the dashboard uses a free port instead", DEFAULT_PORT)
            server = DashboardServer(app, host, 0)
    else:
        server = DashboardServer(app, host, port)
    server.start()
    return server


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
