"""Start the bundled crypto_server when the pipeline needs one that is not running."""

from __future__ import annotations

import logging
import socket
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class _Server(Protocol):
    url: str

    def stop(self) -> None: ...


class PriceServerError(Exception):
    """The bundled server was needed but could not start; the message is one line."""


def ensure_price_server(url: str | None) -> _Server | None:
    """Start the bundled server at ``url`` if it is a local address where nothing listens.

    Returns the started server (the caller stops it), or None when ``url`` is
    remote, unset, or something already answers there.
    """
    if not url:
        return None
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if host not in _LOCAL_HOSTS:
        return None
    if _listening(host, port):
        log.info("using the price server already listening at %s", url)
        return None
    import crypto_server  # only when needed: it loads Flask and builds the data set

    try:
        server: Any = crypto_server.serve_in_background(host=host, port=port)
    except OSError as exc:
        raise PriceServerError(f"cannot start the bundled price server on {host}:{port}: {exc.strerror or exc}") from None
    log.info("started the bundled price server at %s (nothing was listening there)", server.url)
    return server


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
