"""HttpClient against a real local HTTP server that misbehaves on request."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from workers.http import HttpClient, ResponseTooLarge, _CappedRetry

Handler = Callable[[http.server.BaseHTTPRequestHandler, int], None]


class _Server:
    """Routes path -> handler(request, hit number); counts hits per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: dict[str, int] = {}
        server = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                server.routes[self.path](self, server.hits[self.path])

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def _send(request: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"ok", **headers: str) -> None:
    request.send_response(status)
    request.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        request.send_header(name.replace("_", "-"), value)
    request.end_headers()
    request.wfile.write(body)


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_server_errors_are_retried_until_success(server):
    server.routes["/flaky"] = lambda r, n: _send(r, 503 if n < 3 else 200, b"fine")
    response = HttpClient(backoff=0.001).get(server.url + "/flaky")
    assert response.text == "fine" and server.hits["/flaky"] == 3


def test_the_last_error_is_raised_when_retries_run_out(server):
    server.routes["/down"] = lambda r, n: _send(r, 500, b"broken")
    with pytest.raises(requests.HTTPError, match="500"):
        HttpClient(retries=2, backoff=0.001).get(server.url + "/down")
    assert server.hits["/down"] == 3  # the first try and two retries


def test_a_404_is_not_retried(server):
    server.routes["/missing"] = lambda r, n: _send(r, 404, b"no")
    with pytest.raises(requests.HTTPError, match="404"):
        HttpClient(backoff=0.001).get(server.url + "/missing")
    assert server.hits["/missing"] == 1


def test_429_waits_for_retry_after_then_succeeds(server):
    server.routes["/limited"] = lambda r, n: _send(r, 429, b"slow down", Retry_After="0") if n == 1 else _send(r, 200)
    assert HttpClient(backoff=0.001).get(server.url + "/limited").status_code == 200
    assert server.hits["/limited"] == 2


class _Headers:
    def __init__(self, retry_after: str) -> None:
        self.headers = {"Retry-After": retry_after}


def test_retry_after_is_honoured_but_capped():
    retry = _CappedRetry(total=3, max_retry_after=2.5)
    assert retry.get_retry_after(_Headers("1")) == 1
    assert retry.get_retry_after(_Headers("3600")) == 2.5
    assert retry.get_retry_after(_Headers("soon")) is None  # garbage falls back to backoff
    assert retry.new(total=2).max_retry_after == 2.5  # survives urllib3 copying the object per retry


def test_a_body_over_max_bytes_is_refused_by_its_declared_length(server):
    server.routes["/big"] = lambda r, n: _send(r, 200, b"x" * 5000)
    with pytest.raises(ResponseTooLarge, match="5000 bytes"):
        HttpClient(max_bytes=1000).get(server.url + "/big")


def test_a_body_over_max_bytes_is_refused_while_streaming(server):
    def chunked(request: http.server.BaseHTTPRequestHandler, n: int) -> None:
        request.send_response(200)
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        for _ in range(20):
            request.wfile.write(b"200\r\n" + b"y" * 0x200 + b"\r\n")
        request.wfile.write(b"0\r\n\r\n")

    server.routes["/stream"] = chunked
    with pytest.raises(ResponseTooLarge, match="over 4000 bytes"):
        HttpClient(max_bytes=4000).get(server.url + "/stream")
    assert HttpClient().get(server.url + "/stream").content == b"y" * 0x200 * 20


def test_a_trickling_body_is_cut_off_by_the_total_timeout(server):
    def trickle(request: http.server.BaseHTTPRequestHandler, n: int) -> None:
        request.send_response(200)
        request.send_header("Content-Length", "100")
        request.end_headers()
        for _ in range(100):  # each byte well within the read timeout; 5 s in all
            request.wfile.write(b"z")
            request.wfile.flush()
            time.sleep(0.05)

    server.routes["/trickle"] = trickle
    client = HttpClient(read_timeout=2, total_timeout=0.3, retries=0)
    with pytest.raises(requests.Timeout, match="took over 0.3s"):
        client.get(server.url + "/trickle")


def test_a_server_that_never_answers_times_out(server):
    server.routes["/silent"] = lambda r, n: time.sleep(3)
    with pytest.raises(requests.ConnectionError):  # requests' ReadTimeout is a ConnectionError too
        HttpClient(read_timeout=0.2, retries=0).get(server.url + "/silent")


def test_gzip_bodies_are_decoded(server):
    server.routes["/gz"] = lambda r, n: _send(r, 200, gzip.compress(b"hello " * 100), Content_Encoding="gzip")
    assert HttpClient().get(server.url + "/gz").text == "hello " * 100
