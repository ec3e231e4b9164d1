"""Request headers for gevent's WSGI handler, read line by line instead of by the email parser.

pywsgi builds its headers with ``http.client.parse_headers``, which runs the
``email`` package's feed parser: about a tenth of the server's CPU per request.
:class:`RequestHeaders` offers the part of that object pywsgi uses (``status``,
``get``, ``getheader``, ``typeheader``, ``headers``, ``del``) and keeps the
limits of ``http.client``: a line longer than 65,536 bytes or more than 100
header lines make ``status`` non-empty, which pywsgi answers with 400. So does a
line that is not ``name: value`` (the email parser would have dropped it).
"""

from __future__ import annotations

from typing import IO

MAX_LINE = 65536  # bytes per header line, as http.client
MAX_HEADERS = 100  # header lines per request, as http.client


class RequestHeaders:
    """The header block of one request, read from ``rfile`` up to and including its empty line.

    ``status`` is "" when the block was well formed, else why it was not (the rest of
    the block is then left unread: the connection is answered 400 and closed).
    """

    __slots__ = ("status", "_lines", "_fields")

    def __init__(self, rfile: IO[bytes], *_: object) -> None:
        self.status = ""
        self._lines: list[str] = []  # "Name: value\r\n" as received, continuation lines included
        self._fields: dict[str, str] = {}  # lower-case name -> value of its first occurrence
        name = None
        while True:
            line = rfile.readline(MAX_LINE + 1)
            if len(line) > MAX_LINE:
                self.status = "Line too long"
                return
            if line in (b"\r\n", b"\n", b""):
                return
            if len(self._lines) >= MAX_HEADERS:
                self.status = f"More than {MAX_HEADERS} headers"
                return
            text = line.decode("latin-1")
            if text[0] in " \t":  # obsolete line folding: more of the previous value
                if name is None:
                    self.status = "Continuation line without a header"
                    return
                if name in self._fields:
                    self._fields[name] = f"{self._fields[name]} {text.strip()}".strip()
            else:
                key, colon, value = text.partition(":")
                if not colon or not key.strip():
                    self.status = "Malformed header line"
                    return
                name = key.strip().lower()
                self._fields.setdefault(name, value.strip())
            self._lines.append(text if text.endswith("\r\n") else text.rstrip("\r\n") + "\r\n")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first header ``name`` (any case), else ``default``."""
        return self._fields.get(name.lower(), default)

    getheader = get

    @property
    def typeheader(self) -> str | None:
        return self._fields.get("content-type")

    @property
    def headers(self) -> list[str]:
        """Every header line as received, ending in CRLF (what pywsgi builds the environ from)."""
        return self._lines

    def __delitem__(self, name: str) -> None:
        # pywsgi drops Content-Length when the body is chunked.
        key = name.lower()
        if key not in self._fields:
            raise KeyError(name)
        del self._fields[key]
        kept, dropping = [], False
        for line in self._lines:
            if line[0] not in " \t":  # a new header: its continuation lines go (or stay) with it
                dropping = line.partition(":")[0].strip().lower() == key
            if not dropping:
                kept.append(line)
        self._lines = kept
