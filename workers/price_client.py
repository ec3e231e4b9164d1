"""The price server's HTTP API, as one thread's client, and the checks of the days and exchanges it is asked for."""

from __future__ import annotations

import datetime as dt
import os
import reprlib
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import requests

from workers.http import HttpClient
from workers.validation import clean_name

__all__ = ["DEFAULT_BASE_URL", "Day", "PriceDataError", "PriceServerClient", "parse_day", "parse_exchanges"]

DEFAULT_BASE_URL = "http://127.0.0.1:5000"
_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

Day = dt.date | Literal["latest"]
T = TypeVar("T")


class PriceDataError(Exception):
    """The server answered 2xx but the body is not a usable price (the message says why and where)."""


def parse_exchanges(value: Any) -> list[str] | Literal["all"]:
    """Check an ``exchanges`` parameter: ``"all"`` or a non-empty list of names."""
    if value == "all":
        return "all"
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"exchanges must be 'all' or a list of exchange names, not {reprlib.repr(value)}")
    if not value:
        raise ValueError("exchanges is an empty list; give at least one exchange or 'all'")
    return [clean_name(name, "exchange") for name in value]


def parse_day(value: Any, name: str, *, allow_latest: bool = True) -> Day:
    """Check a day parameter: ``YYYY-MM-DD`` (or a ``date``, as YAML loads it), or ``"latest"``."""
    if allow_latest and value == "latest":
        return "latest"
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _DAY_RE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass  # e.g. 2020-02-30: reported below like any other bad date
    expected = "YYYY-MM-DD or 'latest'" if allow_latest else "YYYY-MM-DD"
    raise ValueError(f"{name} must be {expected}, not {reprlib.repr(value)}")


class _Flight:
    """One lookup in progress: its followers wait for ``done``; ``value`` is set if it succeeded."""

    __slots__ = ("done", "ok", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None
        self.error: BaseException | None = None


class _SharedLookups:
    """Lookups in flight, shared by the clients of this process that ask the same URL at the same time.

    A fetch pool starts its threads together and each one's client asks the
    server's exchange list and newest day: W requests for one answer. Here the
    first asker (the leader) sends the request; those who ask while it is in
    flight wait for its answer instead. Nothing is kept once it is answered (no
    stale answers): a later asker sends its own request. A follower whose
    leader failed asks for itself, so it sees its own error; but when the
    leader ran out of time, or the follower's own ``total_timeout`` went on
    waiting, it raises a timeout at once, so no thread waits more than one
    ``total_timeout`` for these lookups.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _flights: clients of many threads ask at once
        self._flights: dict[str, _Flight] = {}

    def ask(self, url: str, fetch: Callable[[], T], timeout: float) -> T:
        """``fetch()``'s answer, or that of the same lookup in flight in another thread."""
        with self._lock:
            flight = self._flights.get(url)
            leader = flight is None
            if leader:
                flight = self._flights[url] = _Flight()
        assert flight is not None
        if not leader:
            if not flight.done.wait(timeout):
                # The follower's whole budget went on waiting: a request of its own now would double it.
                raise requests.Timeout(f"GET {url}: no answer within {timeout:g}s (asked by another thread)")
            if flight.ok:
                return flight.value  # type: ignore[no-any-return]
            if isinstance(flight.error, requests.Timeout):
                # The server did not answer in time: asking again would only wait as long once more.
                raise flight.error
            return fetch()
        try:
            flight.value = fetch()
            flight.ok = True
            return flight.value  # type: ignore[no-any-return]
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[url]
            flight.done.set()


# Process-wide on purpose: it shares only requests in flight, and holds nothing once they end.
_SHARED = _SharedLookups()


class PriceServerClient:
    """The price server's endpoints over one :class:`HttpClient`, for one thread.

    ``base_url`` defaults to ``$PRICE_SERVER_URL``, else ``http://127.0.0.1:5000``;
    ``http`` holds keyword arguments for ``HttpClient``.  The exchange list and
    the newest day are asked once and remembered (only once they succeed);
    clients in other threads asking them at the same moment share one request.
    """

    def __init__(self, base_url: str | None = None, http: Mapping[str, Any] | None = None) -> None:
        self.base_url = (base_url or os.environ.get("PRICE_SERVER_URL") or DEFAULT_BASE_URL).rstrip("/")
        if http is not None and not isinstance(http, Mapping):
            raise ValueError(f"http must be a mapping of HttpClient arguments, not {http!r}")
        # One object serves one thread, so one pooled connection is all it ever uses.
        options = {"pool_size": 1, **(http or {})}
        try:
            self.http = HttpClient(**options)
        except TypeError as exc:
            raise ValueError(f"bad http parameters {dict(http or {})!r}: {exc}") from exc
        self._exchanges: list[str] | None = None
        self._latest: dt.date | None = None

    def url(self, *parts: str) -> str:
        """The URL of ``/part/part...``; each part is escaped so a symbol cannot change the path."""
        return "/".join([self.base_url, *(quote(part, safe="") for part in parts)])

    def get_json(self, url: str) -> Any:
        """GET ``url`` and decode its JSON; raise ``PriceDataError`` if it is not JSON."""
        response = self.http.get(url)
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
            raise PriceDataError(f"bad JSON from {url}: {exc}") from exc

    def exchanges(self) -> list[str]:
        """All exchanges the server knows (``GET /exchanges``)."""
        if self._exchanges is None:
            url = self.url("exchanges")
            self._exchanges = _SHARED.ask(url, lambda: self._read_exchanges(url), self.http.total_timeout)
        return self._exchanges

    def latest_day(self) -> dt.date:
        """The newest day the server has prices for (``last`` of ``GET /days``)."""
        if self._latest is None:
            url = self.url("days")
            self._latest = _SHARED.ask(url, lambda: self._read_latest_day(url), self.http.total_timeout)
        return self._latest

    def _read_exchanges(self, url: str) -> list[str]:
        data = self.get_json(url)
        if not isinstance(data, list) or not data or not all(isinstance(x, str) and x for x in data):
            raise PriceDataError(f"expected a non-empty list of exchange names from {url}, got {data!r:.200}")
        return data

    def _read_latest_day(self, url: str) -> dt.date:
        data = self.get_json(url)
        last = data.get("last") if isinstance(data, dict) else None
        try:
            return parse_day(last, "last", allow_latest=False)  # type: ignore[return-value]
        except ValueError as exc:
            raise PriceDataError(f"no usable 'last' day from {url}: {data!r:.200}") from exc

    def check(self, exchanges: list[str] | Literal["all"]) -> None:
        """Raise one clear sentence unless the server answers and knows every named exchange."""
        try:
            known = self.exchanges()
        except (requests.RequestException, PriceDataError) as exc:
            raise RuntimeError(f"the price server at {self.base_url} cannot be used: {exc}") from exc
        unknown = [] if exchanges == "all" else [name for name in exchanges if name not in known]
        if unknown:
            raise ValueError(f"unknown exchange(s) {', '.join(unknown)}; the server has {', '.join(known)}")

    def resolve(self, day: Day) -> dt.date:
        """``day`` itself, or the newest day when it is ``"latest"``."""
        return self.latest_day() if day == "latest" else day  # type: ignore[return-value]

    def close(self) -> None:
        self.http.close()
