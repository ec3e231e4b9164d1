"""HttpClient's counters, checked against what a real server says it answered."""

from __future__ import annotations

import socket
from collections import Counter

import pytest
import requests

import crypto_server
from workers.http import HttpClient
from workers.http_stats import LATENCY_BOUNDS
from workers.price_worker import PriceWorker
from workers.task_planner import TaskPlanner
from workers.wiki_worker import WikiWorker


def _statuses(counters: Counter[str]) -> dict[int, float]:
    return {int(k.rsplit(".", 1)[1]): v for k, v in counters.items() if k.startswith("http.status.")}


def _latency_count(counters: Counter[str]) -> float:
    return sum(v for k, v in counters.items() if k.startswith("http.latency.le."))


def test_every_attempt_status_and_retry_reason_is_counted_as_the_server_saw_it():
    with crypto_server.serve_in_background(port=0, error_rate=0.4, seed=3) as server:
        client = HttpClient(retries=8, backoff=0.0)
        gets = 30
        for _ in range(gets):
            client.get(f"{server.url}/exchanges")
        client.close()
        c = client.counters
        assert server.stats.errors_injected > 0
        assert c["http.requests"] == server.stats.requests
        statuses = _statuses(c)
        assert statuses[200] == gets
        assert sum(statuses.values()) == server.stats.requests
        assert c["http.retries.5xx"] == server.stats.errors_injected == c["http.retries"]
        assert _latency_count(c) == gets
        assert c["http.latency.sum"] > 0
        assert c["http.bytes"] > 0


def test_rate_limited_answers_count_as_429_retries_and_their_retry_after_wait():
    with crypto_server.serve_in_background(port=0, rate_limit=2) as server:
        client = HttpClient(retries=5, backoff=0.0, max_retry_after=0.2)
        for _ in range(4):
            client.get(f"{server.url}/exchanges")
        c = client.counters
        assert c["http.retries.429"] == server.stats.rate_limited > 0
        assert c["http.status.429"] == server.stats.rate_limited
        assert c["http.retry_after_seconds"] == pytest.approx(0.2 * server.stats.rate_limited)


def test_a_refused_connection_counts_each_attempt_and_connect_retries():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        client = HttpClient(retries=2, backoff=0.0)
        with pytest.raises(requests.ConnectionError):
            client.get(f"http://127.0.0.1:{port}/")
    assert client.counters["http.requests"] == 3
    assert client.counters["http.retries"] == client.counters["http.retries.connect"] == 2
    assert not _statuses(client.counters)
    assert _latency_count(client.counters) == 1  # failed requests have a latency too


def test_a_final_error_answer_is_counted_once():
    with crypto_server.serve_in_background(port=0, error_rate=1.0) as server:
        client = HttpClient(retries=2, backoff=0.0)
        with pytest.raises(requests.HTTPError):
            client.get(f"{server.url}/exchanges")
    assert client.counters["http.requests"] == server.stats.requests == 3
    assert sum(_statuses(client.counters).values()) == 3
    assert client.counters["http.retries"] == 2


def test_latency_buckets_are_log_spaced_and_one_per_request():
    assert all(b == pytest.approx(a * 2) for a, b in zip(LATENCY_BOUNDS, LATENCY_BOUNDS[1:]))
    with crypto_server.serve_in_background(port=0, sleep=0.05) as server:
        client = HttpClient()
        client.get(f"{server.url}/exchanges")
    (bucket,) = [k for k, v in client.counters.items() if k.startswith("http.latency.le.") and v]
    seconds = client.counters["http.latency.sum"]
    assert seconds >= 0.05
    bound = float(bucket.rsplit(".le.", 1)[1])
    assert bound / 2 < seconds <= bound  # the one bucket that holds it


@pytest.mark.parametrize("make, item, own", [
    (lambda url: PriceWorker(base_url=url, exchanges=["kraken"], date="latest"), "BTC", "prices"),
    (lambda url: TaskPlanner(base_url=url, start="2024-01-01", end="2024-01-02"), "BTC", "tasks"),
    (lambda url: WikiWorker(), "{url}/wiki/List_of_cryptocurrencies", None),
])
def test_workers_that_own_a_client_expose_its_counters_as_their_own(make, item, own):
    with crypto_server.serve_in_background(port=0) as server:
        worker = make(server.url)
        list(worker.process(item.format(url=server.url)))
        worker.close()
        assert worker.counters["http.requests"] == worker.counters["http.status.200"] == server.stats.requests > 0
    if own:
        assert worker.counters[own] >= 1
