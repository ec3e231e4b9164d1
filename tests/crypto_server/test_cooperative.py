"""The gevent server (crypto_server.cooperative) on real sockets: keep-alive, cooperative latency,
idle timeout, stop, and that nothing is monkey patched. The behaviour it shares with werkzeug's
server is tested on both in test_server.py."""

from __future__ import annotations

import http.client
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import crypto_server
from crypto_server import server as server_module

TIMEOUT = 10
PATH = "/price/kraken/btc/2020-01-02"


def test_one_connection_carries_many_requests(start_price_server: Callable[..., crypto_server.ServerHandle]) -> None:
    handle = start_price_server(server="gevent")
    conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=TIMEOUT)
    try:
        conn.connect()
        local = conn.sock.getsockname()
        for path in (PATH, "/nope", "/days", "/wiki/List_of_cryptocurrencies"):
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            assert response.status == (404 if path == "/nope" else 200)
            assert len(body) == int(response.headers["Content-Length"])
            assert response.headers.get("Connection", "").lower() != "close"
        assert conn.sock is not None and conn.sock.getsockname() == local, "the same connection throughout"
    finally:
        conn.close()
    assert handle.stats.requests == 4


def test_headers_and_body_leave_together(start_price_server: Callable[..., crypto_server.ServerHandle]) -> None:
    # pywsgi sends them in two calls; on a keep-alive connection the body then waited ~40 ms
    # for the client's delayed ACK (Nagle). Sent together, the first recv has the whole answer.
    handle = start_price_server(server="gevent")
    with socket.create_connection(("127.0.0.1", handle.port), timeout=TIMEOUT) as sock:
        for method in ("GET", "GET", "HEAD", "GET", "GET"):
            sock.sendall(f"{method} /days HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.endswith(b"\r\n\r\n" if method == "HEAD" else b'"last":"2020-04-30"}\n'), answer


def test_latency_is_slept_cooperatively(start_price_server: Callable[..., crypto_server.ServerHandle]) -> None:
    # 200 requests sleeping 0.5 s each in one thread: only a sleep that yields lets them overlap
    # (a blocking one would take 100 s). The bound only proves it ends.
    handle = start_price_server(server="gevent", sleep=0.5)
    barrier = threading.Barrier(200)

    def one(_: int) -> int:
        barrier.wait()
        return requests.get(handle.url + PATH, timeout=TIMEOUT).status_code

    start = time.monotonic()
    with ThreadPoolExecutor(200) as pool:
        assert list(pool.map(one, range(200))) == [200] * 200
    assert time.monotonic() - start < 9
    assert handle.stats.peak_in_flight > 100


@pytest.mark.parametrize("server", ["werkzeug", "gevent"])
def test_a_silent_client_is_disconnected_after_the_idle_timeout(
    monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    monkeypatch.setattr(server_module, "_IDLE_TIMEOUT", 0.3)
    with crypto_server.serve_in_background(server=server) as handle:
        with socket.create_connection(("127.0.0.1", handle.port), timeout=TIMEOUT) as silent:
            start = time.monotonic()
            assert silent.recv(1) == b""  # the server closed it
            assert 0.2 < time.monotonic() - start < TIMEOUT - 1
        assert requests.get(handle.url + "/days", timeout=TIMEOUT).status_code == 200


def test_stop_closes_idle_connections_and_lets_requests_in_flight_finish(
    start_price_server: Callable[..., crypto_server.ServerHandle],
) -> None:
    handle = start_price_server(server="gevent")
    idle = socket.create_connection(("127.0.0.1", handle.port), timeout=TIMEOUT)
    idle.sendall(b"GET /days HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200 OK")  # a keep-alive connection, now idle
    handle.set_faults(sleep=0.3)
    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(requests.get(handle.url + PATH, timeout=TIMEOUT).status_code))
    slow.start()
    waited = time.monotonic()
    while handle.stats.in_flight == 0 and time.monotonic() - waited < TIMEOUT:
        time.sleep(0.01)
    start = time.monotonic()
    handle.stop()
    assert time.monotonic() - start < 5  # the grace is 1 s; the slow request needs 0.3 s
    slow.join(TIMEOUT)
    assert answers == [200], "the request in flight was answered"
    assert idle.recv(1) == b"", "the idle connection was closed"
    idle.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(handle.url + "/days", timeout=2)


def test_stop_before_the_server_thread_runs_is_clean() -> None:
    app = crypto_server.create_app(assets=3)
    server = server_module._bind(app, "127.0.0.1", 0, "gevent")
    server.shutdown()  # never served: returns at once
    server.serve_forever()  # and serving after a shutdown returns at once too
    server.server_close()
    with socket.socket() as again:
        again.bind(("127.0.0.1", server.port))  # the port is free


def test_serving_with_gevent_patches_nothing(start_price_server: Callable[..., crypto_server.ServerHandle]) -> None:
    from gevent import monkey

    handle = start_price_server(server="gevent", sleep=0.01)
    assert requests.get(handle.url + "/days", timeout=TIMEOUT).status_code == 200
    assert not monkey.is_anything_patched()
    assert time.sleep.__module__ == "time" and socket.socket.__module__ == "socket"


def test_an_unknown_server_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="server must be one of gevent, werkzeug"):
        crypto_server.serve_in_background(server="tornado")


@pytest.mark.timeout(60)
def test_the_child_process_serves_with_gevent_unless_told_otherwise() -> None:
    for options, keep_alive in (({}, True), ({"server": "werkzeug"}, False)):
        with crypto_server.start_server_process(assets=3, **options) as child:
            port = int(child.url.rsplit(":", 1)[1])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            try:
                conn.request("GET", "/days")
                response = conn.getresponse()
                response.read()
                assert response.status == 200
                assert (response.headers.get("Connection") != "close") is keep_alive, options
            finally:
                conn.close()
            assert child.stats()["requests"] == 1


@pytest.mark.timeout(60)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil reads another process's limits on Linux")
def test_the_child_process_may_hold_thousands_of_connections() -> None:
    import psutil

    with crypto_server.start_server_process(assets=3) as child:
        soft, hard = psutil.Process(child.pid).rlimit(psutil.RLIMIT_NOFILE)
    assert soft == hard or soft >= 65536
