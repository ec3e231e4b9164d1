"""``http.client``'s response, with its headers read without the ``email`` package.

``http.client.HTTPResponse.begin`` hands the header block to ``email.parser``, a
general MIME parser: for the few plain ``Name: value`` lines of an API answer it
is about a sixth of the client's CPU per request. :class:`HTTPResponse` reads
them itself into the same ``http.client.HTTPMessage``; a block it does not
fully understand (a folded line, a line without a colon) goes to ``email.parser``
as before, so odd answers parse exactly as ``http.client`` parses them.
Everything else (status line, limits, body framing, ``will_close``) follows
``http.client`` to the letter; a test compares the two on many answers.
"""

from __future__ import annotations

import email.parser
import http.client
import re

# http.client's limits, for the same errors on the same input.
_MAX_LINE = 65536
_MAX_HEADERS = 100
_END_OF_BLOCK = (b"\r\n", b"\n", b"")
_NO_BODY_STATUSES = (http.client.NO_CONTENT, http.client.NOT_MODIFIED)
_NAME = re.compile(r"[!-9;-~]+")  # what email.parser takes for a header's name: printable, no space or colon


class HTTPResponse(http.client.HTTPResponse):
    """A drop-in ``http.client.HTTPResponse`` whose ``begin()`` parses plain headers directly."""

    def begin(self) -> None:
        if self.headers is not None:  # already begun (http.client calls it once; be as forgiving)
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            _read_block(self.fp)  # an interim 100 Continue: its headers mean nothing here
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = parse_headers(_read_block(self.fp))

        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                pass
            else:
                if self.length < 0:  # a nonsensical length is no length
                    self.length = None
        if status in _NO_BODY_STATUSES or 100 <= status < 200 or self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # the body ends where the connection does


def parse_headers(lines: list[bytes]) -> http.client.HTTPMessage:
    """The ``HTTPMessage`` of a header block's raw lines (the last one is the blank line that ends it)."""
    message = http.client.HTTPMessage()
    for line in lines[:-1]:
        text = line.decode("iso-8859-1")
        name, colon, value = text.partition(":")
        # A folded line, a line without a colon, an odd name: email.parser's rules apply.
        if not colon or _NAME.fullmatch(name) is None:
            return _parse_with_email(lines)
        message._headers.append((name, value.lstrip(" \t").rstrip("\r\n")))  # type: ignore[attr-defined]
    message.set_payload("")  # as email.parser leaves it: no body text after the headers
    return message


def _parse_with_email(lines: list[bytes]) -> http.client.HTTPMessage:
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)  # type: ignore[return-value]


def _read_block(fp) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The raw lines of a header block, its closing blank line included, under ``http.client``'s limits."""
    lines = []
    while True:
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAX_HEADERS:  # the closing blank line counts, as in http.client
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        if line in _END_OF_BLOCK:
            return lines
