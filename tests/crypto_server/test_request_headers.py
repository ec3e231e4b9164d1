"""The gevent server's own header reader (crypto_server.request_headers): what pywsgi needs of it,
on real sockets, and the limits it keeps."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Callable

import crypto_server
from crypto_server.request_headers import MAX_HEADERS, MAX_LINE, RequestHeaders

TIMEOUT = 10


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def test_fields_lines_folding_and_deletion() -> None:
    block = (
        b"Host: a\r\nX-Twice: first\r\nx-twice: second\r\nCONTENT-LENGTH: 12\r\n"
        b"Content-Type: text/plain\r\nX-Folded: one\r\n two\r\n\r\nbody"
    )
    rfile = io.BytesIO(block)
    headers = RequestHeaders(rfile, 0)
    assert headers.status == ""
    assert rfile.read() == b"body", "the block is read up to and including its empty line, no further"
    assert headers.get("x-twice") == "first" and headers.getheader("Content-Length") == "12"
    assert headers.typeheader == "text/plain" and headers.get("X-Folded") == "one two"
    assert headers.get("missing", "-") == "-"
    assert headers.headers[-2:] == ["X-Folded: one\r\n", " two\r\n"]
    del headers["x-folded"]
    del headers["content-length"]
    assert headers.get("content-length") is None
    kept = ["Host: a\r\n", "X-Twice: first\r\n", "x-twice: second\r\n", "Content-Type: text/plain\r\n"]
    assert headers.headers == kept


def test_the_limits_of_http_client_are_kept() -> None:
    assert RequestHeaders(io.BytesIO(b"X: " + b"a" * MAX_LINE + b"\r\n\r\n")).status == "Line too long"
    many = b"".join(b"X-%d: a\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    assert RequestHeaders(io.BytesIO(many)).status
    assert RequestHeaders(io.BytesIO(many.split(b"X-100")[0] + b"\r\n")).status == ""
    assert RequestHeaders(io.BytesIO(b"no colon here\r\n\r\n")).status == "Malformed header line"
    assert RequestHeaders(io.BytesIO(b" folded first\r\n\r\n")).status
    assert RequestHeaders(io.BytesIO(b"")).status == "", "a client that hung up: no headers, no error"


def test_a_malformed_header_is_answered_400_and_closed(
    start_price_server: Callable[..., crypto_server.ServerHandle],
) -> None:
    handle = start_price_server(server="gevent")
    answer = _exchange(handle.port, b"GET /days HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\nGET /days HTTP/1.1\r\n\r\n")
    assert _statuses(answer) == [400]
    too_many = b"".join(b"X-%d: a\r\n" % i for i in range(MAX_HEADERS + 1))
    assert _statuses(_exchange(handle.port, b"GET /days HTTP/1.1\r\n" + too_many + b"\r\n")) == [400]


def test_framing_headers_drive_keep_alive_in_any_case(
    start_price_server: Callable[..., crypto_server.ServerHandle],
) -> None:
    # A body of Content-Length bytes is skipped so the next request is read right; a chunked
    # body overrides Content-Length; "connection: CLOSE" in any case ends the connection.
    handle = start_price_server(server="gevent")
    requests = (
        b"POST /days HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello"
        b"GET /days HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /days HTTP/1.1\r\nHost: x\r\nconnection: CLOSE\r\n\r\n"
        b"GET /days HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert _statuses(_exchange(handle.port, requests)) == [405, 200, 200]
    chunked = (
        b"POST /days HTTP/1.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    assert _statuses(_exchange(handle.port, chunked)) == [405]
    assert handle.stats.requests == 4
