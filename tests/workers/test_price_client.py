"""PriceServerClient: the exchange list and newest day, asked by many threads' clients at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.workers.test_http import _send, _Server
from workers.price_client import PriceServerClient

THREADS = 20


class _HeldServer:
    """Answers ``/exchanges`` and ``/days`` only once ``release`` is set; ``answer(n)`` gives the n-th's status."""

    def __init__(self, answer: Callable[[int], int]) -> None:
        self.release = threading.Event()
        self._server = _Server()
        self.url, self.hits = self._server.url, self._server.hits

        def held(data: Any) -> Callable[[Any, int], None]:
            def respond(request: Any, n: int) -> None:
                self.release.wait(10)
                status = answer(n)
                _send(request, status, json.dumps(data if status == 200 else {"error": "no"}).encode())

            return respond

        self._server.routes["/exchanges"] = held(["bitstamp", "kraken"])
        self._server.routes["/days"] = held({"last": "2020-04-30"})

    def close(self) -> None:
        self.release.set()
        self._server.close()


def _ask_together(server: _HeldServer, ask: Callable[[PriceServerClient], Any]) -> list[Any]:
    """``ask`` from THREADS clients in THREADS threads at once; each one's answer or exception."""
    clients = [PriceServerClient(server.url, {"retries": 0}) for _ in range(THREADS)]
    results: list[Any] = [None] * THREADS
    asking = threading.Barrier(THREADS + 1)

    def one(i: int) -> None:
        asking.wait()
        try:
            results[i] = ask(clients[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    asking.wait()
    time.sleep(0.3)  # every thread is now waiting on the one request in flight
    server.release.set()
    for thread in threads:
        thread.join(10)
    for client in clients:
        client.close()
    return results


@pytest.fixture
def held() -> Iterator[Callable[[Callable[[int], int]], _HeldServer]]:
    servers: list[_HeldServer] = []

    def make(answer: Callable[[int], int]) -> _HeldServer:
        servers.append(_HeldServer(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_clients_asking_at_the_same_time_share_one_request(held):
    server = held(lambda n: 200)
    results = _ask_together(server, lambda client: (client.exchanges(), client.latest_day().isoformat()))
    assert results == [(["bitstamp", "kraken"], "2020-04-30")] * THREADS
    assert server.hits == {"/exchanges": 1, "/days": 1}
    # Nothing is kept once answered: a client asking later sends its own request.
    PriceServerClient(server.url).exchanges()
    assert server.hits["/exchanges"] == 2


def test_when_the_shared_request_fails_the_others_ask_for_themselves(held):
    server = held(lambda n: 404 if n == 1 else 200)
    results = _ask_together(server, lambda client: client.exchanges())
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == 1 and isinstance(failed[0], requests.HTTPError)
    assert results.count(["bitstamp", "kraken"]) == THREADS - 1


def test_against_a_silent_server_no_thread_waits_more_than_one_total_timeout(held):
    # The server holds /exchanges for 10 s. The leader gives up after its total_timeout; a follower
    # must not then send a request of its own and wait as long again (2 x total_timeout in all).
    server = held(lambda n: 200)
    total_timeout = 1.0
    clients = [PriceServerClient(server.url, {"retries": 0, "total_timeout": total_timeout}) for _ in range(THREADS)]
    outcomes: list[Any] = [None] * THREADS
    asking = threading.Barrier(THREADS)

    def one(i: int) -> None:
        asking.wait()
        started = time.monotonic()
        try:
            clients[i].exchanges()
            outcomes[i] = ("answered", time.monotonic() - started)
        except Exception as exc:
            outcomes[i] = (exc, time.monotonic() - started)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for client in clients:
        client.close()
    assert all(isinstance(error, requests.Timeout) for error, _ in outcomes)
    assert server.hits["/exchanges"] == 1, "the followers did not send requests of their own"
    # Each waited one total_timeout (plus scheduling); asking again after the leader's timeout took two.
    assert max(seconds for _, seconds in outcomes) < 1.7 * total_timeout
