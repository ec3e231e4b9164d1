"""Which price server a run uses: the one at ``PRICE_SERVER_URL``, or a private bundled one.

For a local ``http://`` URL (127.0.0.1, localhost, ::1):

- a price server answers there: the run uses it and never stops it. Nothing of ours
  ever listens at the configured URL, so whatever answers there was started on purpose
  (the README's slow demo server, say).
- nothing listens there: the bundled crypto_server is started in a child process on a
  free port, for this run alone, and the run's pipeline is pointed at it. The run stops
  it when it ends, and it stops by itself if the run is killed.
- something else listens there (another program, macOS AirPlay on port 5000): the run
  is refused with one line naming ``PRICE_SERVER_URL``.

A price server is recognised as the tutorial API defines one: ``GET <url>/exchanges``
answers 200 with a JSON list of strings within :data:`PROBE_TIMEOUT` seconds. A 429 or
5xx answer (a demo server injecting faults) is asked again until then, and a server that
answers nothing else is used (with a warning): it speaks HTTP and may be a price server
having trouble, which the run's retries and checks deal with.

Any other URL (a remote host, https) is used as it is; the pipeline's own checks apply.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from workers.http_deadline import Deadline, DeadlineSocket

if TYPE_CHECKING:
    from crypto_server import ServerProcess

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0  # seconds: the demo server (--sleep 1 --jitter 0.5) answers well within it
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_PAUSE = 0.2
_MAX_BODY = 1 << 20  # a list of exchange names is a few hundred bytes


class PriceServerError(Exception):
    """The run cannot have a price server; the message is one line that says what to do."""


def private_price_server(configured: str | None, timeout: float = PROBE_TIMEOUT) -> ServerProcess | None:
    """Start a private bundled server if the run needs one; None if it uses ``configured`` as it is.

    ``configured`` is the value of ``PRICE_SERVER_URL`` (None: not set, which gets a
    private server too). The caller points the pipeline at the returned server's
    ``url`` and stops it when the run ends. Raises :class:`PriceServerError` when
    something other than a price server listens at ``configured``, or the bundled
    server cannot start.
    """
    if configured:
        parts = urlsplit(configured)
        if parts.scheme != "http" or not _is_loopback(parts.hostname):
            return None
        try:
            port = 80 if parts.port is None else parts.port
        except ValueError:
            raise PriceServerError(
                f"PRICE_SERVER_URL={configured}: the port is not a number between 0 and 65535; "
                "correct it in .env.local or the environment"
            ) from None
        try:
            problem = _what_is_wrong(parts.hostname or "", port, parts.path.rstrip("/"), timeout)
        except _NothingListens:
            return _start_bundled(configured)
        if problem is not None:
            raise PriceServerError(
                f"PRICE_SERVER_URL={configured}: what listens there is not a price server ({problem}); "
                "set PRICE_SERVER_URL in .env.local or the environment to your price server, "
                "or to a local port where nothing listens to have the bundled one started for each run"
            )
        log.info("using the price server at PRICE_SERVER_URL=%s", configured)
        return None
    return _start_bundled(configured)


def _start_bundled(configured: str | None) -> ServerProcess:
    import crypto_server  # only when needed: it loads Flask

    started = time.monotonic()
    try:
        server = crypto_server.start_server_process()
    except crypto_server.ServerProcessError as exc:
        raise PriceServerError(f"cannot start the bundled price server: {exc}") from None
    where = f"nothing listens at PRICE_SERVER_URL={configured}" if configured else "PRICE_SERVER_URL is not set"
    log.info(
        "%s: started the bundled price server for this run at %s (process %d, %.2fs)",
        where, server.url, server.pid, time.monotonic() - started,
    )  # fmt: skip
    return server


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class _NothingListens(Exception):
    """The connection was refused (or the address is not usable here): no program listens."""


def _what_is_wrong(host: str, port: int, path: str, timeout: float) -> str | None:
    """None if a price server answers at host:port; else what is wrong, as a phrase.

    Raises :class:`_NothingListens` when no program listens there.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, content_type, body = _get(host, port, f"{path}/exchanges", deadline)
        except TimeoutError:
            return f"no HTTP answer to GET {path}/exchanges within {timeout:g}s"
        except (OSError, http.client.HTTPException) as exc:
            return f"GET {path}/exchanges got no HTTP answer: {type(exc).__name__}"
        if status in _RETRY_STATUSES:
            if time.monotonic() + _RETRY_PAUSE < deadline:
                time.sleep(_RETRY_PAUSE)
                continue
            # An HTTP server failing for now, like a demo server with a high error rate: its
            # clients' retries (and the price stage's own check) decide, not a guess from here.
            log.warning("the server at PRICE_SERVER_URL answers %d to GET %s/exchanges; using it anyway", status, path)
            return None
        if status != 200:
            return f"GET {path}/exchanges answered {status} {content_type}".rstrip()
        try:
            names = json.loads(body)
        except (ValueError, RecursionError):
            names = None
        if isinstance(names, list) and all(isinstance(name, str) for name in names):
            return None
        return f"GET {path}/exchanges answered 200 {content_type}, not a JSON list of exchange names".rstrip()


def _get(host: str, port: int, target: str, deadline: float) -> tuple[int, str, bytes]:
    """GET ``target``: status, content type and body (at most _MAX_BODY bytes), all before ``deadline``.

    Raises TimeoutError once the deadline passes, however slowly the peer trickles.
    """
    try:
        sock = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        raise  # something is there but does not accept: not nothing
    except OSError:
        raise _NothingListens from None
    with sock:
        host_header = f"[{host}]" if ":" in host else host
        request = (
            f"GET {quote(target, safe='/%')} HTTP/1.1\r\nHost: {host_header}:{port}\r\n"
            "Accept: application/json\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(request.encode("ascii"))
        bound = Deadline()
        bound.at = deadline
        response = http.client.HTTPResponse(DeadlineSocket(sock, bound), method="GET")  # type: ignore[arg-type]
        response.begin()
        return response.status, response.getheader("Content-Type", ""), response.read(_MAX_BODY)
