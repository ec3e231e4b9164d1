"""HTTP for workers: retries, backoff and timeouts that are always set.

Each worker object owns one :class:`HttpClient` (a ``requests.Session`` is not
shared between threads); the engine builds one worker object per thread.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ResponseTooLarge(requests.RequestException):
    """The body was larger than the client's ``max_bytes``."""


class _CappedRetry(Retry):
    """urllib3 Retry that honours Retry-After but never sleeps longer than ``max_retry_after``.

    A server may ask for an hour; a pipeline run should not silently stall for it.
    """

    def __init__(self, *args: Any, max_retry_after: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after

    def new(self, **kwargs: Any) -> "_CappedRetry":
        # Retry.new() rebuilds the object from its own arguments; carry ours along.
        kwargs.setdefault("max_retry_after", self.max_retry_after)
        return super().new(**kwargs)

    def get_retry_after(self, response: Any) -> float | None:
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:
            return None  # a garbage header falls back to exponential backoff
        return None if seconds is None else min(seconds, self.max_retry_after)


class HttpClient:
    """A ``requests.Session`` with retries on connection errors, 429 and 5xx, and timeouts.

    ``get(url)`` returns a response whose body has been read (at most
    ``max_bytes``, within ``total_timeout`` seconds) and whose status is 2xx;
    anything else raises a ``requests.RequestException`` that says what went wrong.
    ``read_timeout`` bounds each wait for data; ``total_timeout`` bounds the body
    as a whole, so a server trickling a byte at a time cannot hold a thread forever.
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
        user_agent: str = "crypto-pipeline/1.0",
    ) -> None:
        self.timeout = (connect_timeout, read_timeout)
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes
        retry = _CappedRetry(
            total=retries,
            backoff_factor=backoff,
            backoff_max=backoff_max,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD"}),
            respect_retry_after_header=True,
            raise_on_status=False,  # hand back the last error response so its status is reported
            max_retry_after=max_retry_after,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=pool_size)
        self.session = requests.Session()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = user_agent
        if not urllib.request.getproxies():
            # requests re-reads proxy settings from the environment on every request,
            # a fifth of its CPU per GET here; with no proxy configured there is nothing to find.
            self.session.trust_env = False

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET ``url`` with retries; raise unless the final answer is 2xx and small enough."""
        deadline = time.monotonic() + self.total_timeout
        response = self.session.get(url, timeout=self.timeout, stream=True, **kwargs)
        try:
            response.raise_for_status()
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise ResponseTooLarge(f"response of {declared} bytes from {url} is over {self.max_bytes}")
            body = self._read_body(response, url, deadline)
        finally:
            response.close()
        # requests reads a streamed body into _content; we read it ourselves to cap its size.
        response._content = bytes(body)
        return response

    def _read_body(self, response: requests.Response, url: str, deadline: float) -> bytearray:
        body = bytearray()
        try:
            while True:
                # read1 returns after one receive, so the deadline is checked as data trickles in.
                chunk = response.raw.read1(64 * 1024, decode_content=True)
                if not chunk:
                    return body
                body += chunk
                if len(body) > self.max_bytes:
                    raise ResponseTooLarge(f"response from {url} is over {self.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise requests.Timeout(f"response from {url} took over {self.total_timeout:g}s")
        # Reading the raw stream bypasses requests' own translation of urllib3's errors.
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.ReadTimeout(f"reading {url}: {exc}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise requests.ConnectionError(f"reading {url}: {exc}") from exc

    def close(self) -> None:
        self.session.close()
