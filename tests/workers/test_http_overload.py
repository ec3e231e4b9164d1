"""The HTTP client's ``overload`` counter: what ``instances: auto`` shrinks a pool on (see engine.contract)."""

from __future__ import annotations

import pytest
import requests

import crypto_server
from workers.http import HttpClient


def test_429_and_503_answers_count_as_overload_and_500_and_200_do_not():
    with crypto_server.serve_in_background(port=0, error_rate=0.5, rate_limit=50, seed=5) as server:
        client = HttpClient(retries=100, backoff=0.0, max_retry_after=0.1)
        for _ in range(40):
            client.get(f"{server.url}/exchanges")
        client.close()
    c = client.counters
    assert c["http.status.429"] > 0 and c["http.status.503"] > 0 and c["http.status.500"] > 0
    assert c["overload"] == c["http.status.429"] + c["http.status.503"]


def test_a_timeout_counts_as_overload():
    with crypto_server.serve_in_background(port=0, sleep=0.5) as server:
        client = HttpClient(read_timeout=0.05, retries=2, backoff=0.0, total_timeout=5)
        with pytest.raises(requests.RequestException):
            client.get(f"{server.url}/exchanges")
        client.close()
    assert client.counters["http.retries.timeout"] == 2 and client.counters["overload"] == 2
