"""workers.http_wire.HTTPResponse reads every answer exactly as http.client.HTTPResponse does.

Each raw answer goes over a real socket pair to both classes; what ``begin()``
leaves (status, reason, version, headers, body framing, defects) or raises must
be the same, and so must the body read after it.
"""

from __future__ import annotations

import http.client
import socket

import pytest

from workers.http_wire import HTTPResponse

OK = b"HTTP/1.1 200 OK\r\n"

ANSWERS = {
    "plain json": OK + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "keep-alive without length": OK + b"Content-Type: text/plain\r\n\r\nbody until close",
    "connection close": OK + b"Connection: close\r\nContent-Length: 4\r\n\r\nbody",
    "chunked": OK + b"Transfer-Encoding: Chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
    "chunked beats length": OK + b"Transfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "http/1.0 keep-alive": b"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
    "http/1.0 plain": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "no reason": b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
    "204": b"HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n",
    "304": b"HTTP/1.1 304 Not Modified\r\n\r\n",
    "100 then 200": b"HTTP/1.1 100 Continue\r\nX-Skipped: 1\r\n\r\n" + OK + b"Content-Length: 2\r\n\r\nok",
    "duplicate headers": OK + b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
    "spaces kept at the end": OK + b"X-Pad: value  \r\nContent-Length:   3 \r\n\r\nabc",
    "tab before value": OK + b"X-Tab:\tvalue\r\nContent-Length: 0\r\n\r\n",
    "empty value": OK + b"X-Empty:\r\nContent-Length: 0\r\n\r\n",
    "bare newlines": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "latin-1 value": OK + b"X-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n",
    "negative length": OK + b"Content-Length: -5\r\n\r\nrest",
    "bad length": OK + b"Content-Length: twelve\r\n\r\nrest",
    "folded line": OK + b"X-Folded: one\r\n  two\r\nContent-Length: 0\r\n\r\n",
    "line without colon": OK + b"Content-Length: 0\r\nnot a header\r\nX-After: 1\r\n\r\n",
    "space in name": OK + b"Bad Name: 1\r\nContent-Length: 0\r\n\r\n",
    "space before colon": OK + b"Content-Length : 0\r\n\r\n",
    "empty name": OK + b": value\r\nContent-Length: 0\r\n\r\n",
    "from line": OK + b"From nobody\r\nContent-Length: 0\r\n\r\n",
    "101 headers": OK + b"".join(b"X-%d: v\r\n" % n for n in range(101)) + b"\r\n",
    "100 headers": OK + b"".join(b"X-%d: v\r\n" % n for n in range(99)) + b"Content-Length: 0\r\n\r\n",
    "long header line": OK + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
    "bad status line": b"SPAM 200 OK\r\n\r\n",
    "unknown protocol": b"HTTP/2.0 200 OK\r\n\r\n",
    "closed before headers": b"",
    "headers cut short": OK + b"Content-Length: 2\r\n",
}


def _answer(raw: bytes, cls: type[http.client.HTTPResponse], method: str) -> dict[str, object]:
    """What ``cls`` makes of ``raw`` sent over a real socket: its state after begin() and its body, or its error."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(raw)
        theirs.shutdown(socket.SHUT_WR)
        response = cls(ours, method=method)
        try:
            response.begin()
        except Exception as exc:  # the error is part of what must be the same
            return {"error": type(exc), "args": exc.args}
        try:
            body: object = response.read()
        except Exception as exc:
            body = type(exc)
        message = response.msg
        return {
            "status": response.status,
            "reason": response.reason,
            "version": response.version,
            "items": message.items(),
            "content-type": message.get_content_type(),
            "defects": [type(d) for d in message.defects],
            "payload": message.get_payload(),
            "length": response.length,
            "chunked": response.chunked,
            "will_close": response.will_close,
            "body": body,
        }


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("name", list(ANSWERS))
def test_every_answer_is_read_as_http_client_reads_it(name: str, method: str) -> None:
    expected = _answer(ANSWERS[name], http.client.HTTPResponse, method)
    assert _answer(ANSWERS[name], HTTPResponse, method) == expected


def test_plain_headers_do_not_go_through_the_email_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    import email.parser

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("email.parser used for plain headers")

    monkeypatch.setattr(email.parser.Parser, "parsestr", refuse)
    state = _answer(ANSWERS["plain json"], HTTPResponse, "GET")
    assert state["items"] == [("Content-Type", "application/json"), ("Content-Length", "2")]
    assert state["body"] == b"{}"
