"""HTTP for workers: retries, backoff, and one deadline per request that bounds every wait.

Each worker object owns one :class:`HttpClient` (it is not shared between
threads); the engine builds one worker object per thread.
How the deadline reaches the sockets is in :mod:`workers.http_deadline`.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import requests
import urllib3
import urllib3.exceptions
import urllib3.util
from urllib3 import connectionpool
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from workers.http_deadline import Deadline, HTTPConnectionPool, HTTPSConnectionPool, bind_deadline
from workers.http_response import HttpResponse
from workers.http_stats import count_latency, count_response, count_retry

__all__ = ["DeadlineExceeded", "HttpClient", "HttpResponse", "RedirectRefused", "ResponseTooLarge", "RETRY_STATUSES"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A request target that can be sent as it is: printable ASCII, no space (anything else is parsed and escaped).
_PLAIN_TARGET = re.compile(r"/[!-~]*")


class ResponseTooLarge(requests.RequestException):
    """The body was larger than the client's ``max_bytes``."""


class DeadlineExceeded(requests.Timeout):
    """The request as a whole (connect, headers, body, retries) took longer than ``total_timeout``."""


class RedirectRefused(requests.RequestException):
    """The server redirected to another origin (scheme, host, port) and the client does not follow that."""


class _Tally:
    """A client's counters, and the last urllib3 response already counted (so it is not counted twice)."""

    __slots__ = ("counters", "counted")

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.counted: Any = None


class _CappedRetry(Retry):
    """urllib3 Retry that honours Retry-After, but never sleeps past ``max_retry_after`` or the deadline.

    A server may ask for an hour; a pipeline run should not silently stall for it.
    It also counts every failed attempt and every retry into ``tally``.
    """

    def __init__(
        self,
        *args: Any,
        max_retry_after: float = 30.0,
        deadline: Deadline | None = None,
        tally: _Tally | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after
        self.deadline = deadline
        self.tally = tally or _Tally()

    def new(self, **kwargs: Any) -> "_CappedRetry":
        # Retry.new() rebuilds the object from its own arguments; carry ours along.
        kwargs.setdefault("max_retry_after", self.max_retry_after)
        kwargs.setdefault("deadline", self.deadline)
        kwargs.setdefault("tally", self.tally)
        return super().new(**kwargs)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> "_CappedRetry":
        # urllib3 calls this once per failed attempt: count the attempt, then the retry if there is one.
        tally = self.tally
        if response is not None:
            count_response(tally.counters, response.status)
            tally.counted = response  # handed on as the final answer if no retry is left: counted already
        else:
            tally.counters["http.requests"] += 1
        retry = super().increment(method, url, response, error, _pool, _stacktrace)  # raises when retries run out
        if self.deadline is not None and self.deadline.expired():
            # No time left for another try: give up with this try's error, not a string of instant failures.
            reason = error or urllib3.exceptions.ResponseError(f"no time left to retry after status {response.status}")
            raise urllib3.exceptions.MaxRetryError(_pool, url or "", reason)
        count_retry(tally.counters, None if response is None else response.status, error)
        return retry

    def sleep_for_retry(self, response: Any) -> bool:
        seconds = self.get_retry_after(response)
        if not seconds:
            return False
        self.tally.counters["http.retry_after_seconds"] += seconds
        time.sleep(seconds)
        return True

    def get_retry_after(self, response: Any) -> float | None:
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:
            return None  # a garbage header falls back to exponential backoff
        return None if seconds is None else self._within_deadline(min(seconds, self.max_retry_after))

    def get_backoff_time(self) -> float:
        return self._within_deadline(super().get_backoff_time())

    def _within_deadline(self, seconds: float) -> float:
        # Sleeping past the deadline is pointless: the next try would fail at once.
        if self.deadline is None:
            return seconds
        return max(0.0, min(seconds, self.deadline.remaining()))


class HttpClient:
    """An HTTP client for one thread: retries on connection errors, 429 and 5xx, and bounded waits.

    It speaks through urllib3's connection pools directly (one pool per origin,
    ``pool_size`` kept-alive connections each), under urllib3's ``Retry``:
    ``requests`` would cost twice the CPU per request for nothing a worker
    uses. Errors are still ``requests``' exceptions, so callers catch
    ``requests.RequestException`` as before.

    ``get(url)`` returns an :class:`HttpResponse` whose body has been read (at
    most ``max_bytes``) and whose status is 2xx; anything else raises a
    ``requests.RequestException`` that says what went wrong.

    Time: ``total_timeout`` bounds one ``get()`` as a whole: connecting, every
    byte of the headers and the body, all retries and the waits between them
    (backoff, ``Retry-After``). Past it, :class:`DeadlineExceeded` is raised, so
    ``get()`` never takes more than ``total_timeout`` plus a few milliseconds,
    however slowly the server trickles its bytes. Within that, ``connect_timeout``
    bounds each connection attempt and ``read_timeout`` each wait for the next
    bytes, so a silent server is retried sooner than the deadline. Not bounded by
    the deadline: the system's host name resolution (none for an IP address), and
    reads through a SOCKS proxy (``read_timeout`` bounds each of those).

    Redirects: at most ``max_redirects``, and only within the origin (scheme,
    host and port) of the URL asked for, unless ``allow_cross_origin_redirects``;
    a redirect elsewhere raises :class:`RedirectRefused` naming both origins.

    Proxies: those of the environment (``HTTP_PROXY``, ``NO_PROXY``...), as
    ``requests`` reads them, or ``get(url, proxies={...})``. Certificates are
    checked against certifi's bundle (or ``$REQUESTS_CA_BUNDLE``); ``verify``
    may name another bundle or be False.

    Stats: ``counters`` (a ``collections.Counter``) counts requests, answers by
    status, retries by reason, Retry-After waits, bytes and latency, under the
    names listed in :mod:`workers.http_stats`. A worker that owns a client
    shares it as its own ``counters`` so the run report and the live view see them.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        total_timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.2,
        backoff_max: float = 5.0,
        max_retry_after: float = 30.0,
        pool_size: int = 2,
        max_bytes: int = 10 * 1024 * 1024,
        max_redirects: int = 10,
        allow_cross_origin_redirects: bool = False,
        user_agent: str = "crypto-pipeline/1.0",
    ) -> None:
        if not total_timeout > 0 or not connect_timeout > 0 or not read_timeout > 0:
            raise ValueError("connect_timeout, read_timeout and total_timeout must be > 0 seconds")
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        if not isinstance(allow_cross_origin_redirects, bool):
            raise ValueError(f"allow_cross_origin_redirects must be true or false, not {allow_cross_origin_redirects!r}")
        self.timeout = (connect_timeout, read_timeout)
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.allow_cross_origin_redirects = allow_cross_origin_redirects
        # One get() at a time per client (one client per thread), so one deadline object serves them all.
        self._deadline = Deadline()
        self._tally = _Tally()
        self.counters = self._tally.counters
        self._retry = _CappedRetry(
            total=retries,
            backoff_factor=backoff,
            backoff_max=backoff_max,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,  # hand back the last error response so its status is reported
            redirect=False,  # redirects are followed here, one hop at a time, to check each one's origin
            max_retry_after=max_retry_after,
            deadline=self._deadline,
            tally=self._tally,
        )
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate", "Accept": "*/*"}
        self._pool_size = pool_size
        self._pools = _Pools(self._deadline, pool_size)
        self._proxy_managers: dict[tuple[str, Any], urllib3.PoolManager] = {}
        # Looked up once, at the first request (most of a client's set-up cost, and a thread of a
        # large pool may never send one); requests re-reads them on every request, a fifth of its CPU per GET.
        self._environment_proxies: bool | None = None

    def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        proxies: Mapping[str, str] | None = None,
        verify: bool | str = True,
    ) -> HttpResponse:
        """GET ``url`` within ``total_timeout``; raise unless the final answer is 2xx and small enough.

        ``headers`` are sent besides the client's own; ``proxies`` maps a scheme
        (or ``scheme://host``) to a proxy URL, as in ``requests``; ``verify``:
        check TLS certificates (True), against this CA bundle (a path), or not (False).
        """
        deadline = self._deadline
        deadline.start(self.total_timeout)
        started = time.perf_counter()
        try:
            response = self._follow(url, {**self._headers, **headers} if headers else self._headers, proxies, verify)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError) as exc:
            if deadline.expired():
                # Whatever broke last (a cut read, a refused retry), the cause is the deadline.
                raise DeadlineExceeded(
                    f"GET {url} took over {self.total_timeout:g}s (total_timeout: connect, headers, body "
                    f"and retries); last error: {_last_error(exc)}"
                ) from exc
            raise
        finally:
            deadline.clear()
            count_latency(self.counters, time.perf_counter() - started)
        self.counters["http.bytes"] += len(response.content)
        return response

    def _follow(
        self, url: str, headers: Mapping[str, str], proxies: Mapping[str, str] | None, verify: bool | str
    ) -> HttpResponse:
        """GET ``url`` and the redirects it leads to (each hop with the full retry policy)."""
        hops = 0
        while True:
            raw = self._open(url, headers, proxies, verify)
            done = False  # the body read to its end: the connection may serve the next request
            try:
                if raw is not self._tally.counted:  # a final answer the retry policy has not counted
                    count_response(self.counters, raw.status)
                self._tally.counted = None
                location = raw.get_redirect_location()
                if location:
                    target = urljoin(url, location)
                    self._check_redirect(raw.status, url, target)
                    hops += 1
                    if hops > self.max_redirects:
                        raise requests.TooManyRedirects(f"Exceeded {self.max_redirects} redirects.")
                    url = target
                    continue  # the redirect's body is dropped with its connection, in the finally below
                response = HttpResponse(raw.status, raw.reason or "", raw.headers, url, b"")
                response.raise_for_status()
                response.content = self._read_body(raw, url)
                done = True
                return response
            finally:
                if not done:
                    raw.close()  # unread bytes would spoil the connection for the next request
                raw.release_conn()

    def _open(
        self, url: str, headers: Mapping[str, str], proxies: Mapping[str, str] | None, verify: bool | str
    ) -> urllib3.BaseHTTPResponse:
        """Send one GET (with retries) and return urllib3's answer, its body not read yet."""
        proxy = self._proxy_for(url, proxies)
        options = {
            "headers": headers, "retries": self._retry, "redirect": False, "timeout": self._timeout,
            "preload_content": False, "decode_content": True,
        }  # fmt: skip
        if proxy is None:
            pool, target = self._pools.route(url, verify)
            send, options["assert_same_host"] = pool.urlopen, False
        else:
            send, target = self._proxy_manager(proxy, verify).urlopen, url
        try:
            return send("GET", target, **options)
        except urllib3.exceptions.HTTPError as exc:
            raise _as_requests_error(exc) from exc

    def _check_redirect(self, status: int, url: str, target: str) -> None:
        """Refuse a redirect to another origin unless the client allows them."""
        if self.allow_cross_origin_redirects:
            return
        here, there = _origin(url), _origin(target)
        if here != there:
            raise RedirectRefused(
                f"{status} redirect from {here} to another origin, {there}: not followed "
                f"(set allow_cross_origin_redirects to follow it)"
            )

    def _read_body(self, raw: urllib3.BaseHTTPResponse, url: str) -> bytes:
        declared = raw.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ResponseTooLarge(f"response of {declared} bytes from {url} is over {self.max_bytes}")
        try:
            if declared and "Content-Encoding" not in raw.headers:
                body = raw.read()  # the declared length, at most max_bytes: one read, no copy
            else:
                body = self._read_capped(raw, url)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.ReadTimeout(f"reading {url}: {exc}") from exc
        except (urllib3.exceptions.HTTPError, http.client.HTTPException) as exc:
            raise requests.ConnectionError(f"reading {url}: {exc}") from exc
        return body

    def _read_capped(self, raw: urllib3.BaseHTTPResponse, url: str) -> bytes:
        """A body of unknown (or encoded) length, refused as soon as it passes ``max_bytes``."""
        body = bytearray()
        while True:
            # read1 returns after one receive: the size cap is checked as data comes in.
            chunk = raw.read1(64 * 1024)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.max_bytes:
                raise ResponseTooLarge(f"response from {url} is over {self.max_bytes} bytes")

    def _proxy_for(self, url: str, proxies: Mapping[str, str] | None) -> str | None:
        """The proxy URL for ``url``: from ``proxies``, else from the environment (which ``NO_PROXY`` may exclude)."""
        if self._environment_proxies is None:
            self._environment_proxies = bool(urllib.request.getproxies())
        if not proxies and not self._environment_proxies:
            return None
        chosen = dict(proxies or {})
        if self._environment_proxies:
            for scheme, proxy in requests.utils.get_environ_proxies(url).items():
                chosen.setdefault(scheme, proxy)
        return requests.utils.select_proxy(url, chosen)

    def _proxy_manager(self, proxy: str, verify: bool | str) -> urllib3.PoolManager:
        manager = self._proxy_managers.get((proxy, verify))
        if manager is None:
            tls = _tls_options(verify)
            if proxy.lower().startswith("socks"):
                try:
                    from urllib3.contrib.socks import SOCKSProxyManager
                except ImportError:
                    raise requests.exceptions.InvalidSchema(f"SOCKS proxy {proxy}: PySocks is not installed") from None
                manager = SOCKSProxyManager(proxy, maxsize=self._pool_size, **tls)
            else:
                manager = bind_deadline(urllib3.proxy_from_url(proxy, maxsize=self._pool_size, **tls), self._deadline)
            self._proxy_managers[(proxy, verify)] = manager
        return manager

    def close(self) -> None:
        """Close every kept-alive connection."""
        self._pools.close()
        for manager in self._proxy_managers.values():
            manager.clear()
        self._proxy_managers.clear()


class _Pools:
    """The client's direct connection pools, one per (origin, ``verify``); the least recently added
    is closed past ``_MAX_ORIGINS``.

    ``route`` is on every request's path: a URL whose origin has a pool already
    and whose path is plain ASCII is split with two ``find`` calls, not parsed.
    """

    _MAX_ORIGINS = 16

    def __init__(self, deadline: Deadline, pool_size: int) -> None:
        self._deadline = deadline
        self._pool_size = pool_size
        self._pools: dict[tuple[str, bool | str], connectionpool.HTTPConnectionPool] = {}

    def route(self, url: str, verify: bool | str) -> tuple[connectionpool.HTTPConnectionPool, str]:
        """The pool for ``url``'s origin and the request target (path and query) to send it."""
        cut = url.find("/", url.find("://") + 3)
        if cut > 0:
            pool = self._pools.get((url[:cut], verify))
            if pool is not None and _PLAIN_TARGET.fullmatch(url, cut):
                return pool, url[cut:].partition("#")[0]
        return self._route_parsed(url, verify)

    def _route_parsed(self, url: str, verify: bool | str) -> tuple[connectionpool.HTTPConnectionPool, str]:
        try:
            parts = urllib3.util.parse_url(url)
        except urllib3.exceptions.LocationParseError as exc:
            raise requests.exceptions.InvalidURL(f"Invalid URL {url!r}: {exc}") from None
        if parts.scheme is None:
            raise requests.exceptions.MissingSchema(f"Invalid URL {url!r}: No scheme supplied")
        if parts.scheme not in ("http", "https"):
            raise requests.exceptions.InvalidSchema(f"No connection adapters were found for {url!r}")
        if not parts.host:
            raise requests.exceptions.InvalidURL(f"Invalid URL {url!r}: No host supplied")
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        key = (f"{parts.scheme}://{parts.netloc}", verify)
        pool = self._pools.get(key)
        if pool is None:
            if len(self._pools) >= self._MAX_ORIGINS:
                self._pools.pop(next(iter(self._pools))).close()
            if parts.scheme == "https":
                pool = HTTPSConnectionPool(
                    parts.host, port, maxsize=self._pool_size, deadline=self._deadline, **_tls_options(verify)
                )
            else:
                pool = HTTPConnectionPool(parts.host, port, maxsize=self._pool_size, deadline=self._deadline)
            self._pools[key] = pool
        return pool, parts.request_uri

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def _tls_options(verify: bool | str) -> dict[str, Any]:
    """urllib3's certificate options for a ``verify`` as ``requests`` takes it."""
    if verify is False:
        return {"cert_reqs": "CERT_NONE"}
    if verify is True:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    else:
        bundle = verify
    if os.path.isdir(bundle):
        return {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": bundle}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": bundle}


def _as_requests_error(exc: urllib3.exceptions.HTTPError) -> requests.RequestException:
    """The ``requests`` exception ``requests`` itself raises for this urllib3 error."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    ):
        return requests.ConnectTimeout(exc)
    if isinstance(reason, urllib3.exceptions.ResponseError):
        return requests.exceptions.RetryError(exc)
    if isinstance(reason, urllib3.exceptions.ProxyError):
        return requests.exceptions.ProxyError(exc)
    if isinstance(reason, urllib3.exceptions.SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return requests.ReadTimeout(exc)
    if isinstance(exc, urllib3.exceptions.InvalidHeader):
        return requests.exceptions.InvalidHeader(exc)
    return requests.ConnectionError(exc)


def _origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, with the scheme's default port spelled out."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: compare the text as given
        return f"{scheme}://{parts.netloc.lower()}"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS.get(scheme, '')}"


def _last_error(exc: BaseException) -> str:
    """The innermost reason urllib3 wrapped into ``exc``, in one short line."""
    reason: Any = exc.args[0] if exc.args else exc
    while isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    if isinstance(reason, BaseException) and reason.args and isinstance(reason.args[-1], str):
        text = reason.args[-1]  # urllib3 puts (pool or connection, message) in its errors' args
    else:
        text = str(reason)
    return (text.splitlines() or [type(reason).__name__])[0][:200]
