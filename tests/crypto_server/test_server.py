"""The background server on a real socket, through requests."""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
import requests

import crypto_server
from crypto_server import Dataset, faults

from .conftest import CSV_DIR

TIMEOUT = 10
# Both WSGI servers serve the same app: every test on a socket runs on each.
SERVERS = ["werkzeug", "gevent"]


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=TIMEOUT)


@pytest.mark.parametrize("server", SERVERS)
def test_endpoints_through_a_socket(start_price_server: Callable[..., crypto_server.ServerHandle], server: str) -> None:
    handle = start_price_server(server=server)
    url, ds = handle.url, handle.dataset
    assert get(f"{url}/exchanges").json() == ds.exchanges
    assert get(f"{url}/symbols").json() == ds.symbols
    assert get(f"{url}/days").json() == {"first": str(ds.days.first), "last": str(ds.days.last)}
    assert get(f"{url}/price/kraken/BTC/2020-03-12").json() == ds.price("kraken", "btc", "2020-03-12")
    assert get(f"{url}/price/kraken/btc/1990-01-01").json() is None
    for path, status in [("/price/nope/btc/2020-01-01", 404), ("/price/kraken/btc/01-01-2020", 400), ("/x", 404)]:
        response = get(url + path)
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["status"] == status
    for path in ("/", "/wiki/List_of_cryptocurrencies", "/quote/ETH"):
        response = get(url + path)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")


def test_handle_shape(price_server: crypto_server.ServerHandle) -> None:
    assert price_server.url == f"http://127.0.0.1:{price_server.port}"
    assert not price_server.url.endswith("/")
    assert price_server.port > 0
    assert isinstance(price_server.dataset, Dataset)
    assert price_server.faults == crypto_server.Faults()


@pytest.mark.parametrize("server", SERVERS)
def test_stop_frees_the_port_and_is_idempotent(server: str) -> None:
    handle = crypto_server.serve_in_background(server=server)
    port = handle.port
    assert get(f"{handle.url}/days").status_code == 200
    handle.stop()
    handle.stop()
    assert not handle.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{handle.url}/days", timeout=2)
    with crypto_server.serve_in_background(port=port, server=server) as again:  # the same port binds again
        assert again.port == port
        assert get(f"{again.url}/days").status_code == 200
    assert not again.running


@pytest.mark.parametrize("server", SERVERS)
def test_port_in_use_is_a_one_line_os_error(server: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as error:
            crypto_server.serve_in_background(port=port, server=server)
    assert error.value.strerror == f"cannot listen on 127.0.0.1:{port}: address already in use"


def test_data_dir_option(start_price_server: Callable[..., crypto_server.ServerHandle]) -> None:
    handle = start_price_server(data_dir=CSV_DIR)
    assert get(f"{handle.url}/symbols").json() == ["btc", "eth"]
    with pytest.raises(ValueError):
        start_price_server(data_dir=CSV_DIR, dataset=handle.dataset)


@pytest.mark.parametrize("server", SERVERS)
def test_faults_through_a_socket(start_price_server: Callable[..., crypto_server.ServerHandle], server: str) -> None:
    handle = start_price_server(rate_limit=0, server=server)
    response = get(f"{handle.url}/symbols")
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    handle.set_faults(rate_limit=None, error_rate=1.0)
    assert get(f"{handle.url}/symbols").status_code in (500, 503)
    handle.set_faults(error_rate=0.0)
    assert get(f"{handle.url}/symbols").status_code == 200
    assert handle.stats.snapshot() == {
        "requests": 3,
        "in_flight": 0,
        "peak_in_flight": 1,
        "errors_injected": 1,
        "rate_limited": 1,
    }


def fire(url: str, n: int) -> list[int]:
    """n concurrent GETs, released together."""
    barrier = threading.Barrier(n)

    def one(_: Any) -> int:
        barrier.wait()
        return get(url).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_slow_requests_overlap(start_price_server: Callable[..., crypto_server.ServerHandle], server: str) -> None:
    handle = start_price_server(sleep=1.0, server=server)
    assert fire(f"{handle.url}/price/kraken/btc/2020-01-02", 50) == [200] * 50
    assert handle.stats.peak_in_flight >= 50
    assert handle.stats.in_flight == 0


def test_latency_is_spent_concurrently(
    start_price_server: Callable[..., crypto_server.ServerHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sleep blocks until 40 requests are inside it at once: only possible if no lock
    # serialises them. Counts, not timings; the timeout only stops a broken server hanging.
    inside, most = 0, 0
    lock, all_in = threading.Lock(), threading.Event()

    def gate(seconds: float) -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
            if inside == 40:
                all_in.set()
        all_in.wait(timeout=20)
        with lock:
            inside -= 1

    monkeypatch.setattr(faults, "_sleep", gate)
    handle = start_price_server(sleep=0.001, jitter=0.001, error_rate=0.1)
    statuses = fire(f"{handle.url}/exchanges", 40)
    assert most == 40
    assert handle.stats.peak_in_flight == 40
    assert sorted(set(statuses)) <= [200, 500, 503] and statuses.count(200) >= 20


@pytest.mark.parametrize("server", SERVERS)
def test_one_debug_line_per_request(
    start_price_server: Callable[..., crypto_server.ServerHandle], caplog: pytest.LogCaptureFixture, server: str
) -> None:
    handle = start_price_server(server=server)
    with caplog.at_level(logging.DEBUG, logger="crypto_server"):
        for path in ("/days", "/nothing"):
            get(handle.url + path)
    lines = [r for r in caplog.records if r.name == "crypto_server" and "GET /" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.DEBUG] * 2
    assert '"GET /days HTTP/1.1" 200' in lines[0].getMessage()
    assert '"GET /nothing HTTP/1.1" 404' in lines[1].getMessage()
    assert not [r for r in caplog.records if r.name == "werkzeug"], "werkzeug's own access log stays silent"
