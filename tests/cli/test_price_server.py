"""How a run recognises a price server at PRICE_SERVER_URL: real listeners on ports the OS picks."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli.price_server import PriceServerError, private_price_server
from tests.cli.test_app import _free_port


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers GET /exchanges with what the test queued in ``answers``: (status, content type, body)."""

    answers: list[tuple[int, str, bytes]] = []
    protocol_version = "HTTP/1.1"  # keeps connections open unless told otherwise, as many servers do

    def do_GET(self) -> None:
        status, content_type, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[Any]:
    servers = []

    def start(*answers: tuple[int, str, bytes]) -> str:
        handler = type("Handler", (_Handler,), {"answers": list(answers)})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def raw_listener() -> Iterator[Any]:
    """``raw_listener(talk)``: a TCP listener that runs ``talk(connection)`` for each client."""
    listeners = []

    def start(talk: Any) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return  # closed at the end of the test
                threading.Thread(target=talk, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in listeners:
        listener.close()


JSON = "application/json"


def test_a_tutorial_compatible_server_is_a_price_server(http_server):
    # Not the bundled server: any server whose /exchanges is a JSON list of names.
    url = http_server((200, JSON, json.dumps(["binance", "kraken"]).encode()))
    assert private_price_server(url) is None
    assert private_price_server(url + "/") is None


def test_a_faulty_price_server_is_asked_again(http_server):
    url = http_server((503, JSON, b'{"status": 503}'), (429, JSON, b"{}"), (200, JSON, b'["kraken"]'))
    assert private_price_server(url) is None


def test_a_server_failing_throughout_the_check_is_used_with_a_warning(http_server, caplog):
    # It may be a demo server at a high error rate: the run's retries and checks decide.
    url = http_server((503, JSON, b'{"status": 503}'))
    assert private_price_server(url, timeout=0.5) is None
    assert "answers 503 to GET /exchanges; using it anyway" in caplog.text


@pytest.mark.parametrize(
    "answer, reason",
    [
        ((404, "text/html", b"<html>Not Found</html>"), "answered 404 text/html"),
        ((403, "text/plain", b""), "answered 403 text/plain"),  # macOS AirPlay on port 5000
        ((200, JSON, b'{"exchanges": ["kraken"]}'), "not a JSON list of exchange names"),
        ((200, JSON, b"[1, 2]"), "not a JSON list of exchange names"),
        ((200, "text/html", b"<html></html>"), "not a JSON list of exchange names"),
    ],
    ids=["404 page", "403", "JSON object", "list of numbers", "HTML"],
)
def test_other_http_servers_are_refused_saying_what_they_answered(http_server, answer, reason):
    url = http_server(answer)
    with pytest.raises(PriceServerError) as raised:
        private_price_server(url, timeout=1.0)
    message = str(raised.value)
    assert message.startswith(f"PRICE_SERVER_URL={url}: what listens there is not a price server")
    assert reason in message and "\n" not in message
    assert "in .env.local or the environment" in message


def _silent(conn: socket.socket) -> None:
    time.sleep(5)
    conn.close()


def _trickle(conn: socket.socket) -> None:
    try:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 100:
            conn.sendall(bytes([byte]))
            time.sleep(0.02)
    except OSError:
        pass
    finally:
        conn.close()


@pytest.mark.parametrize("talk", [_silent, _trickle], ids=["silent", "trickling headers"])
def test_a_listener_that_does_not_answer_in_time_is_refused_within_the_timeout(raw_listener, talk):
    url = raw_listener(talk)
    started = time.monotonic()
    with pytest.raises(PriceServerError, match="no HTTP answer to GET /exchanges within 0.5s"):
        private_price_server(url, timeout=0.5)
    assert time.monotonic() - started < 2.0  # bounded, however the peer behaves


def test_a_listener_that_hangs_up_is_refused(raw_listener):
    url = raw_listener(lambda conn: conn.close())
    with pytest.raises(PriceServerError, match="got no HTTP answer"):
        private_price_server(url, timeout=1.0)


def test_a_bad_port_in_the_url_is_one_line():
    with pytest.raises(PriceServerError, match=r"PRICE_SERVER_URL=http://127.0.0.1:99999: the port is not"):
        private_price_server("http://127.0.0.1:99999")


def test_remote_and_https_urls_are_used_as_they_are():
    # Returned before any connection is tried (TEST-NET addresses, never reachable).
    assert private_price_server("http://192.0.2.1:5000") is None
    assert private_price_server("https://127.0.0.1:5000") is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "configured", ["free port", "http://127.0.0.1:0", None], ids=["nothing listens", "port 0", "not set"]
)
def test_nothing_there_gets_a_private_bundled_server_elsewhere(configured):
    if configured == "free port":
        configured = f"http://127.0.0.1:{_free_port()}"
    server = private_price_server(configured)
    assert server is not None
    try:
        assert server.url != configured and server.running
        assert private_price_server(server.url) is None  # the bundled server is a price server too
    finally:
        server.stop()
    assert not server.running
