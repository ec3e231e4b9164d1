"""HTTP for workers: retries, backoff, and one deadline per request that bounds every wait.

Each worker object owns one :class:`HttpClient` (a ``requests.Session`` is not
shared between threads); the engine builds one worker object per thread.
How the deadline reaches the sockets is in :mod:`workers.http_deadline`.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from workers.http_deadline import Deadline, DeadlineAdapter
from workers.http_stats import count_latency, count_response, count_retry

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
    """A ``requests.Session`` with retries on connection errors, 429 and 5xx, and bounded waits.

    ``get(url)`` returns a response whose body has been read (at most
    ``max_bytes``) and whose status is 2xx; anything else raises a
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
        self.allow_cross_origin_redirects = allow_cross_origin_redirects
        # One get() at a time per client (one client per thread), so one deadline object serves them all.
        self._deadline = Deadline()
        self._tally = _Tally()
        self.counters = self._tally.counters
        retry = _CappedRetry(
            total=retries,
            backoff_factor=backoff,
            backoff_max=backoff_max,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,  # hand back the last error response so its status is reported
            max_retry_after=max_retry_after,
            deadline=self._deadline,
            tally=self._tally,
        )
        adapter = DeadlineAdapter(
            self._deadline, max_retries=retry, pool_connections=1, pool_maxsize=pool_size
        )
        self.session = requests.Session()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = user_agent
        self.session.max_redirects = max_redirects
        self.session.hooks["response"].append(self._count_response)
        if not allow_cross_origin_redirects:
            self.session.hooks["response"].append(self._refuse_cross_origin)
        if not urllib.request.getproxies():
            # requests re-reads proxy settings from the environment on every request,
            # a fifth of its CPU per GET here; with no proxy configured there is nothing to find.
            self.session.trust_env = False

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET ``url`` within ``total_timeout``; raise unless the final answer is 2xx and small enough."""
        deadline = self._deadline
        deadline.start(self.total_timeout)
        started = time.perf_counter()
        try:
            response = self.session.get(url, timeout=self.timeout, stream=True, **kwargs)
            try:
                response.raise_for_status()
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise ResponseTooLarge(f"response of {declared} bytes from {url} is over {self.max_bytes}")
                body = self._read_body(response, url)
            finally:
                response.close()
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
        self.counters["http.bytes"] += len(body)
        # requests reads a streamed body into _content; we read it ourselves to cap its size.
        response._content = bytes(body)
        return response

    def _read_body(self, response: requests.Response, url: str) -> bytearray:
        body = bytearray()
        try:
            while True:
                # read1 returns after one receive: the size cap is checked as data comes in.
                chunk = response.raw.read1(64 * 1024, decode_content=True)
                if not chunk:
                    return body
                body += chunk
                if len(body) > self.max_bytes:
                    raise ResponseTooLarge(f"response from {url} is over {self.max_bytes} bytes")
        # Reading the raw stream bypasses requests' own translation of urllib3's errors.
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.ReadTimeout(f"reading {url}: {exc}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise requests.ConnectionError(f"reading {url}: {exc}") from exc

    def _count_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Response hook: count every answer that reached requests (each redirect too), unless counted already."""
        if response.raw is not self._tally.counted:
            count_response(self.counters, response.status_code)
        self._tally.counted = None
        return response

    def _refuse_cross_origin(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """Response hook: stop at a redirect to another origin (requests calls it for every hop)."""
        target = self.session.get_redirect_target(response)
        if target is not None:
            here, there = _origin(response.url), _origin(urljoin(response.url, target))
            if here != there:
                response.close()  # streamed: hand the connection back before giving up
                raise RedirectRefused(
                    f"{response.status_code} redirect from {here} to another origin, {there}: not followed "
                    f"(set allow_cross_origin_redirects to follow it)"
                )
        return response

    def close(self) -> None:
        self.session.close()


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
