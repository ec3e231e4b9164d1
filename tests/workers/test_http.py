"""HttpClient against real local HTTP servers that misbehave on request, and hostile raw-socket peers."""

from __future__ import annotations

import gzip
import http.server
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.fixtures.hostile_server import FullListener, HostileServer, silent, slow_body, trickle
from workers.http import DeadlineExceeded, HttpClient, RedirectRefused, ResponseTooLarge, _CappedRetry
from workers.price_worker import ExchangesFailed, PriceWorker

Handler = Callable[[http.server.BaseHTTPRequestHandler, int], None]


class _Server:
    """Routes path -> handler(request, hit number); counts hits per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: dict[str, int] = {}
        self.connections = 0
        server = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                server.connections += 1  # once per TCP connection, however many requests it carries
                super().setup()

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                server.routes[self.path](self, server.hits[self.path])

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


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
    s.close()


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
    with pytest.raises(DeadlineExceeded, match="took over 0.3s"):
        client.get(server.url + "/trickle")


def test_a_server_that_never_answers_times_out(server):
    server.routes["/silent"] = lambda r, n: time.sleep(3)
    with pytest.raises(requests.ConnectionError):  # requests' ReadTimeout is a ConnectionError too
        HttpClient(read_timeout=0.2, retries=0).get(server.url + "/silent")


def test_gzip_bodies_are_decoded(server):
    server.routes["/gz"] = lambda r, n: _send(r, 200, gzip.compress(b"hello " * 100), Content_Encoding="gzip")
    assert HttpClient().get(server.url + "/gz").text == "hello " * 100


# --- one deadline per request, against hostile peers -------------------------------------

DEADLINE = 0.6
# What get() may take beyond its deadline: scheduling on a loaded machine, not another wait.
SLACK = 0.4


def _fails_within_the_deadline(client: HttpClient, url: str, **kwargs: Any) -> tuple[float, DeadlineExceeded]:
    """GET ``url``, which must fail with DeadlineExceeded close to ``DEADLINE``; return (seconds, error)."""
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        client.get(url, **kwargs)
    elapsed = time.monotonic() - start
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + SLACK, f"get() took {elapsed:.2f}s for a {DEADLINE}s deadline"
    assert f"took over {DEADLINE:g}s" in str(caught.value)
    return elapsed, caught.value


@pytest.mark.timeout(15)
def test_headers_trickled_a_byte_at_a_time_fail_within_the_deadline():
    # Each byte comes well within the read timeout: only a deadline over the whole response ends this.
    with HostileServer(trickle(interval=0.05)) as server:
        client = HttpClient(total_timeout=DEADLINE, read_timeout=5, retries=3, backoff=0.01)
        _fails_within_the_deadline(client, server.url + "/price")


@pytest.mark.timeout(15)
def test_a_status_line_trickled_forever_fails_within_the_deadline():
    with HostileServer(trickle(iter(lambda: ord("H"), None), interval=0.02)) as server:
        client = HttpClient(total_timeout=DEADLINE, read_timeout=5, retries=0)
        _fails_within_the_deadline(client, server.url + "/")


@pytest.mark.timeout(15)
def test_retries_of_a_silent_server_stop_at_the_deadline():
    # Alone, 11 tries of 0.3 s each would take 3.3 s; the deadline cuts the series short.
    with HostileServer(silent) as server:
        client = HttpClient(total_timeout=DEADLINE, read_timeout=0.3, retries=10, backoff=0.01)
        _, error = _fails_within_the_deadline(client, server.url + "/")
        assert server.connections >= 2, "the client should have retried within its deadline"
    assert "timed out" in str(error).lower()


@pytest.mark.timeout(15)
def test_a_body_trickled_a_byte_at_a_time_fails_within_the_deadline():
    with HostileServer(slow_body(interval=0.05)) as server:
        client = HttpClient(total_timeout=DEADLINE, read_timeout=5, retries=3)
        _fails_within_the_deadline(client, server.url + "/")


@pytest.mark.timeout(15)
def test_retry_after_waits_stop_at_the_deadline(server):
    server.routes["/busy"] = lambda r, n: _send(r, 503, b"busy", Retry_After="2")
    client = HttpClient(total_timeout=DEADLINE, retries=5, max_retry_after=30)
    _fails_within_the_deadline(client, server.url + "/busy")  # 5 waits of 2 s without the deadline
    assert server.hits["/busy"] == 1


@pytest.mark.timeout(15)
def test_a_connect_that_hangs_ends_at_the_deadline():
    with FullListener() as listener:
        client = HttpClient(total_timeout=DEADLINE, connect_timeout=5, retries=2)
        _fails_within_the_deadline(client, listener.url + "/")


@pytest.mark.timeout(15)
def test_a_proxy_trickling_its_headers_fails_within_the_deadline():
    # Only the proxy is contacted (127.0.0.1); the target's name is never resolved.
    with HostileServer(trickle(interval=0.05)) as proxy:
        client = HttpClient(total_timeout=DEADLINE, read_timeout=5, retries=1)
        _fails_within_the_deadline(client, "http://prices.invalid/x", proxies={"http": proxy.url})
        assert proxy.connections >= 1


@pytest.fixture
def tls_context(tmp_path) -> ssl.SSLContext:
    """A server-side TLS context with a self-signed certificate for 127.0.0.1 (made by openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.mark.timeout(15)
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # the certificate is self-signed
def test_https_headers_trickled_a_byte_at_a_time_fail_within_the_deadline(tls_context):
    with HostileServer(trickle(interval=0.05), tls=tls_context) as server:
        client = HttpClient(total_timeout=DEADLINE, read_timeout=5, retries=2)
        _fails_within_the_deadline(client, server.url + "/", verify=False)


def test_the_deadline_is_per_request_on_a_kept_alive_connection(server):
    server.routes["/ok"] = lambda r, n: _send(r, 200, b"fine")
    client = HttpClient(total_timeout=0.3)
    for _ in range(3):  # each get() has its own 0.3 s, however long the client lives
        assert client.get(server.url + "/ok").text == "fine"
        time.sleep(0.2)
    assert server.hits["/ok"] == 3


def test_bad_timeouts_are_refused():
    with pytest.raises(ValueError, match="total_timeout"):
        HttpClient(total_timeout=0)


# --- redirects ------------------------------------------------------------------------------


@pytest.fixture
def other_server() -> Iterator[_Server]:
    """A second server: another port, hence another origin."""
    s = _Server()
    yield s
    s.close()


def _redirect(to: str, status: int = 302) -> Handler:
    return lambda r, n: _send(r, status, b"", Location=to)


def test_a_redirect_within_the_origin_is_followed(server):
    server.routes["/old"] = _redirect("/new", 301)
    server.routes["/new"] = lambda r, n: _send(r, 200, b"moved here")
    assert HttpClient().get(server.url + "/old").text == "moved here"


def test_a_redirect_to_another_origin_is_refused_naming_both(server, other_server):
    server.routes["/go"] = _redirect(other_server.url + "/elsewhere")
    other_server.routes["/elsewhere"] = lambda r, n: _send(r, 200, b"secret")
    with pytest.raises(RedirectRefused) as caught:
        HttpClient().get(server.url + "/go")
    message = str(caught.value)
    assert f"from {server.url}" in message and f"another origin, {other_server.url}" in message
    assert "allow_cross_origin_redirects" in message
    assert other_server.hits == {}, "the other origin must not be contacted"


def test_scheme_relative_and_same_host_other_port_redirects_are_other_origins(server, other_server):
    port = other_server.url.rsplit(":", 1)[1]
    server.routes["/a"] = _redirect(f"//127.0.0.1:{port}/x")
    server.routes["/b"] = _redirect(f"https://127.0.0.1:{server.url.rsplit(':', 1)[1]}/b")  # same port, other scheme
    for path in ("/a", "/b"):
        with pytest.raises(RedirectRefused, match="another origin"):
            HttpClient().get(server.url + path)
    assert other_server.hits == {}


def test_cross_origin_redirects_are_followed_when_allowed(server, other_server):
    server.routes["/go"] = _redirect(other_server.url + "/elsewhere")
    other_server.routes["/elsewhere"] = lambda r, n: _send(r, 200, b"over there")
    assert HttpClient(allow_cross_origin_redirects=True).get(server.url + "/go").text == "over there"


def test_redirects_are_capped(server):
    server.routes["/loop"] = _redirect("/loop")
    with pytest.raises(requests.TooManyRedirects, match="3 redirects"):
        HttpClient(max_redirects=3).get(server.url + "/loop")
    assert server.hits["/loop"] == 4


def test_allow_cross_origin_redirects_must_be_a_boolean():
    with pytest.raises(ValueError, match="true or false"):
        HttpClient(allow_cross_origin_redirects="no")


def test_price_worker_http_params_reach_the_redirect_policy(server, price_server):
    """A price server that redirects to another origin: refused by default, followed when the YAML allows."""
    server.routes["/price/bitstamp/btc/2020-04-01"] = _redirect(price_server.url + "/price/bitstamp/btc/2020-04-01")
    params = {"base_url": server.url, "exchanges": ["bitstamp"], "date": "2020-04-01"}
    refusing = PriceWorker(**params, http={"retries": 0})
    with pytest.raises(ExchangesFailed, match=f"another origin, {price_server.url}"):
        list(refusing.process("btc"))
    following = PriceWorker(**params, http={"retries": 0, "allow_cross_origin_redirects": True})
    [record] = following.process("btc")
    assert record.close == price_server.dataset.price("bitstamp", "btc", "2020-04-01")["close"]


# --- urllib3 directly: connections, answers, errors ----------------------------------------------


def test_one_kept_alive_connection_serves_every_request_of_a_client(server):
    server.routes["/ok"] = lambda r, n: _send(r, 200, b"fine")
    client = HttpClient(pool_size=1)
    for _ in range(20):
        assert client.get(server.url + "/ok").text == "fine"
    assert server.hits["/ok"] == 20 and server.connections == 1
    client.close()


def test_a_connection_left_with_unread_bytes_is_not_reused(server):
    """A body refused for its size, or a redirect's body, is dropped with its connection:
    the next request must not read those bytes as its own answer."""
    def big_without_length(request: http.server.BaseHTTPRequestHandler, n: int) -> None:
        request.send_response(200)
        request.send_header("Transfer-Encoding", "chunked")
        request.end_headers()
        request.wfile.write(b"2000\r\n" + b"x" * 0x2000 + b"\r\n0\r\n\r\n")

    server.routes["/big"] = big_without_length
    server.routes["/moved"] = lambda r, n: _send(r, 302, b"y" * 5000, Location="/ok")
    server.routes["/ok"] = lambda r, n: _send(r, 200, b"fine")
    client = HttpClient(pool_size=1, max_bytes=4000)
    with pytest.raises(ResponseTooLarge):
        client.get(server.url + "/big")
    assert client.get(server.url + "/ok").text == "fine"
    assert client.get(server.url + "/moved").text == "fine"
    assert client.get(server.url + "/ok").text == "fine"
    assert server.hits == {"/big": 1, "/ok": 3, "/moved": 1}


def test_the_answer_reads_like_a_requests_response(server):
    body = "caf\u00e9 \u20ac".encode("iso-8859-15")
    server.routes["/latin"] = lambda r, n: _send(r, 200, body, Content_Type="text/plain; charset=ISO-8859-15")
    server.routes["/json"] = lambda r, n: _send(r, 200, b'{"a": [1, 2.5]}', Content_Type="application/json")
    server.routes["/teapot"] = lambda r, n: _send(r, 418, b"no")
    client = HttpClient()
    latin = client.get(server.url + "/latin")
    assert latin.text == "caf\u00e9 \u20ac" and latin.content == body and latin.ok
    assert latin.headers["content-type"] == latin.headers["Content-Type"]  # case-insensitive
    answer = client.get(server.url + "/json")
    assert answer.json() == {"a": [1, 2.5]} and answer.status_code == 200 and answer.url == server.url + "/json"
    with pytest.raises(requests.HTTPError, match=f"418 Client Error: I'm a Teapot for url: {server.url}/teapot"):
        client.get(server.url + "/teapot")


def test_bad_urls_raise_requests_errors_before_any_connection():
    client = HttpClient()
    with pytest.raises((requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        client.get("127.0.0.1:1/x")  # "127.0.0.1" may read as a scheme
    with pytest.raises(requests.exceptions.InvalidSchema):
        client.get("ftp://127.0.0.1/x")
    with pytest.raises(requests.exceptions.InvalidURL):
        client.get("http:///x")
    assert client.counters["http.requests"] == 0


def test_a_path_that_needs_escaping_is_escaped(server):
    server.routes["/a%20b/%C3%A9"] = lambda r, n: _send(r, 200, b"escaped")
    client = HttpClient()
    assert client.get(server.url + "/a b/\u00e9").text == "escaped"
    assert client.get(server.url + "/a%20b/%C3%A9#fragment").text == "escaped"  # a fragment is not sent


def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(server, other_server, monkeypatch):
    # The "proxy" is a plain server: a proxied request reaches it with the whole URL as its path.
    target = server.url + "/where"
    other_server.routes[target] = lambda r, n: _send(r, 200, b"via the proxy")
    server.routes["/where"] = lambda r, n: _send(r, 200, b"direct")
    monkeypatch.setenv("HTTP_PROXY", other_server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert HttpClient().get(target).text == "via the proxy"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert HttpClient().get(target).text == "direct"


def test_extra_headers_are_sent_with_the_clients_own(server):
    seen: dict[str, str] = {}

    def record(request: http.server.BaseHTTPRequestHandler, n: int) -> None:
        seen.update(request.headers.items())
        _send(request, 200)

    server.routes["/h"] = record
    HttpClient(user_agent="probe/1").get(server.url + "/h", headers={"X-Trace": "7"})
    assert seen["X-Trace"] == "7" and seen["User-Agent"] == "probe/1" and "gzip" in seen["Accept-Encoding"]
