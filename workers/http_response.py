"""The answer :meth:`workers.http.HttpClient.get` hands back: status, headers, URL and a body read in full.

It has the part of ``requests.Response`` the workers use (``status_code``,
``reason``, ``headers``, ``url``, ``content``, ``text``, ``json()``, ``ok``,
``raise_for_status()``), built from urllib3's answer without the cost of a
``requests.Response`` (cookie jar, hooks, encoding sniffing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

__all__ = ["HttpResponse"]


class HttpResponse:
    """A finished HTTP answer; ``headers`` is case-insensitive (urllib3's ``HTTPHeaderDict``)."""

    __slots__ = ("status_code", "reason", "headers", "url", "content")

    def __init__(self, status_code: int, reason: str, headers: Mapping[str, str], url: str, content: bytes) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.url = url
        self.content = content

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def encoding(self) -> str | None:
        """The ``charset`` of ``Content-Type``, if it names one."""
        content_type = self.headers.get("Content-Type", "")
        for param in content_type.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                return value.strip().strip("'\"")
        return None

    @property
    def text(self) -> str:
        """The body decoded with its declared charset, else UTF-8; undecodable bytes become U+FFFD."""
        encoding = self.encoding or "utf-8"
        try:
            return self.content.decode(encoding, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON (UTF-8, -16 or -32, as ``json.loads`` detects); ``ValueError`` if it is not."""
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        """Raise ``requests.HTTPError`` (as ``requests`` words it) for a 4xx or 5xx answer."""
        if 400 <= self.status_code < 600:
            kind = "Client" if self.status_code < 500 else "Server"
            raise requests.HTTPError(f"{self.status_code} {kind} Error: {self.reason} for url: {self.url}", response=self)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<HttpResponse [{self.status_code}] {self.url}>"
