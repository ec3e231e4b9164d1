"""Fault injection and the request counters: counts, never timings."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crypto_server
from crypto_server import Dataset, Faults, faults

PATH = "/price/kraken/btc/2020-01-15"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(faults, "_now", fake)
    return fake


def statuses(app: crypto_server.CryptoServerApp, n: int, path: str = PATH) -> list[int]:
    client = app.test_client()
    return [client.get(path).status_code for _ in range(n)]


def test_error_rate_one_fails_everything_with_500_or_503(dataset: Dataset) -> None:
    app = crypto_server.create_app(dataset, error_rate=1.0)
    counts = Counter(statuses(app, 40))
    assert set(counts) == {500, 503}
    assert app.stats.errors_injected == 40 == app.stats.requests
    response = app.test_client().get(PATH)
    assert response.mimetype == "application/json" and response.json["status"] in (500, 503)


def test_error_rate_fraction_is_counted(dataset: Dataset) -> None:
    app = crypto_server.create_app(dataset, error_rate=0.3, seed=11)
    counts = Counter(statuses(app, 300))
    failed = counts[500] + counts[503]
    assert counts[200] + failed == 300
    assert 45 <= failed <= 135  # binomial(300, 0.3): mean 90, sd 8
    assert app.stats.errors_injected == failed
    assert app.stats.requests == 300


def test_same_seed_fails_the_same_requests(dataset: Dataset) -> None:
    runs = [statuses(crypto_server.create_app(dataset, error_rate=0.5, seed=s), 60) for s in (4, 4, 5)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_rate_limit_counts(dataset: Dataset, clock: FakeClock) -> None:
    app = crypto_server.create_app(dataset, rate_limit=5)
    client = app.test_client()
    first = [client.get(PATH) for _ in range(12)]
    assert [r.status_code for r in first] == [200] * 5 + [429] * 7
    assert first[5].headers["Retry-After"] == "1"
    assert first[5].json["status"] == 429
    assert app.stats.rate_limited == 7 and app.stats.requests == 12
    clock.now += 0.5
    assert statuses(app, 2) == [429, 429], "still the same one-second window"
    clock.now += 0.6
    assert statuses(app, 7) == [200] * 5 + [429] * 2, "the window moved on"


def test_rate_limiter_is_a_sliding_window(clock: FakeClock) -> None:
    limiter = faults._RateLimiter()
    for t in (0.0, 0.2, 0.4):
        clock.now = 1000 + t
        assert limiter.admit(3) is None
    clock.now = 1000.5
    assert limiter.admit(3) == 1  # the slot frees at 1001.0
    clock.now = 1001.0
    assert limiter.admit(3) is None
    assert limiter.admit(3) == 1
    assert limiter.admit(0) == 1


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(0, 6), steps=st.lists(st.floats(0.0, 0.7), max_size=40))
def test_the_shared_rate_limiter_decides_as_the_sliding_window(limit: int, steps: list[float]) -> None:
    # The shared limiter keeps a ring of the last `limit` admissions instead of a window of times;
    # on any sequence of arrivals both answer alike. (Clock passed by hand: hypothesis and fixtures.)
    now = [1000.0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faults, "_now", lambda: now[0])
        window, ring = faults._RateLimiter(), faults._SharedRateLimiter(limit)
        for step in steps:
            now[0] += step
            assert ring.admit(limit) == window.admit(limit)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="shared counters are for forked processes")
def test_counters_and_limit_shared_with_a_forked_process(clock: FakeClock) -> None:
    stats, limiter = faults.Stats(shared=True), faults._SharedRateLimiter(3)
    pid = os.fork()
    if pid == 0:  # the child: count and admit, then leave at once
        stats._begin()
        stats._limit()
        os._exit(0 if limiter.admit(3) is None and limiter.admit(3) is None else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    stats._begin()
    counts = {"requests": 2, "in_flight": 2, "peak_in_flight": 2, "errors_injected": 0, "rate_limited": 1}
    assert stats.snapshot() == counts
    assert limiter.admit(3) is None, "the child took two of the three"
    assert limiter.admit(3) == 1
    with pytest.raises(ValueError):
        limiter.admit(4)


def test_rate_limited_requests_are_not_delayed_or_failed(dataset: Dataset, clock: FakeClock) -> None:
    app = crypto_server.create_app(dataset, rate_limit=0, error_rate=1.0)
    assert statuses(app, 5) == [429] * 5
    assert app.stats.errors_injected == 0


def test_faults_change_while_serving(dataset: Dataset) -> None:
    app = crypto_server.create_app(dataset)
    assert statuses(app, 3) == [200] * 3
    assert app.set_faults(error_rate=1.0) == Faults(error_rate=1.0)
    assert all(s in (500, 503) for s in statuses(app, 3))
    app.set_faults(error_rate=0.0, sleep=0.0)
    assert statuses(app, 3) == [200] * 3
    assert app.faults == Faults()
    assert app.stats.snapshot() == {
        "requests": 9,
        "in_flight": 0,
        "peak_in_flight": 1,
        "errors_injected": 3,
        "rate_limited": 0,
    }
    app.stats.reset()
    assert app.stats.requests == app.stats.errors_injected == 0


@pytest.mark.parametrize(
    "bad",
    [{"sleep": -1}, {"jitter": float("nan")}, {"error_rate": 1.5}, {"rate_limit": -1}, {"rate_limit": 2.5}],
)
def test_bad_fault_values_are_refused(dataset: Dataset, bad: dict) -> None:
    with pytest.raises(ValueError):
        crypto_server.create_app(dataset, **bad)
    app = crypto_server.create_app(dataset)
    with pytest.raises(ValueError):
        app.set_faults(**bad)
    assert app.faults == Faults(), "a refused change changes nothing"
    with pytest.raises(TypeError):
        app.set_faults(colour="red")


def test_sleep_is_spent_without_holding_a_lock(
    dataset: Dataset, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake clock stands still, so the whole latency is slept (none of it spent building the answer).
    app = crypto_server.create_app(dataset, sleep=0.25, jitter=0.5, seed=1)
    layer = app._fault_layer
    held = []

    def fake_sleep(seconds: float) -> None:
        held.append((seconds, layer._rng_lock.locked(), layer.stats._lock.locked(), layer._limiter._lock.locked()))

    monkeypatch.setattr(faults, "_sleep", fake_sleep)
    statuses(app, 20)
    assert len(held) == 40, "half the latency before the answer is built, the rest after"
    assert all(0.125 <= s <= 0.75 and not any(locks) for s, *locks in held)
    assert len({s for s, *_ in held}) > 2, "jitter varies the delay"


def test_the_answer_is_built_within_the_latency_not_after_it(
    dataset: Dataset, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app's own work (0.1 s here, on the fake clock) is part of the 0.25 s latency: the layer
    # sleeps only what is left, so a burst's work overlaps its waits instead of queueing after them.
    # It builds the answer halfway through, once the requests of a burst are in.
    app = crypto_server.create_app(dataset, sleep=0.25)
    layer = app._fault_layer
    inner = layer._app
    events = []

    def slow_app(environ: dict, start_response):
        clock.now += 0.1
        events.append("built")
        return inner(environ, start_response)

    def fake_sleep(seconds: float) -> None:
        events.append(round(seconds, 6))
        clock.now += seconds

    monkeypatch.setattr(layer, "_app", slow_app)
    monkeypatch.setattr(faults, "_sleep", fake_sleep)
    start = clock.now
    response = app.test_client().get(PATH)
    assert response.status_code == 200 and response.get_json()["close"] > 0
    assert events == [0.125, "built", 0.025]
    assert clock.now - start == pytest.approx(0.25)

    # Work longer than what is left of the latency: no sleep after it.
    app.set_faults(sleep=0.05)
    events.clear()
    assert app.test_client().get(PATH).status_code == 200
    assert events == [0.025, "built"]
