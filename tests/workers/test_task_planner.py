"""TaskPlanner: which tasks, in which order, and its parameters."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.records import PriceTask
from workers.task_planner import TaskPlanner


def plan(symbol: str = "btc", **params) -> list[PriceTask]:
    planner = TaskPlanner(**params)
    try:
        return list(planner.process(symbol))
    finally:
        planner.close()


def test_small_range_gives_every_exchange_and_day_once() -> None:
    tasks = plan(exchanges=["binance", "kraken", "bitstamp"], start="2020-01-30", end="2020-02-02")

    days = ["2020-01-30", "2020-01-31", "2020-02-01", "2020-02-02"]
    expected = {PriceTask("btc", e, d) for e, d in itertools.product(["binance", "kraken", "bitstamp"], days)}
    assert len(tasks) == 3 * 4
    assert set(tasks) == expected


def test_consecutive_tasks_hit_different_exchanges() -> None:
    tasks = plan(exchanges=["a", "b", "c"], start="2020-01-01", end="2020-01-05")

    assert all(x.exchange != y.exchange for x, y in zip(tasks, tasks[1:]))
    # Date-major: every exchange is done with a day before the next day starts.
    assert [t.date for t in tasks] == sorted(t.date for t in tasks)


def test_step_days_and_yaml_dates() -> None:
    # PyYAML loads an unquoted 2020-01-01 as a datetime.date.
    tasks = plan(exchanges=["a"], start=dt.date(2020, 1, 1), end=dt.date(2020, 1, 10), step_days=4)

    assert [t.date for t in tasks] == ["2020-01-01", "2020-01-05", "2020-01-09"]


def test_counts_tasks_and_strips_symbol() -> None:
    planner = TaskPlanner(exchanges=["a", "b"], start="2020-01-01", end="2020-01-01")
    tasks = list(planner.process("  eth "))
    planner.close()

    assert tasks == [PriceTask("eth", "a", "2020-01-01"), PriceTask("eth", "b", "2020-01-01")]
    assert planner.counters["tasks"] == 2


@settings(max_examples=40, deadline=None)
@given(
    start=st.dates(min_value=dt.date(2019, 1, 1), max_value=dt.date(2021, 1, 1)),
    span=st.integers(min_value=0, max_value=40),
    step=st.integers(min_value=1, max_value=7),
    exchanges=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=5, unique=True),
)
def test_plan_is_the_product_in_spreading_order(
    start: dt.date, span: int, step: int, exchanges: list[str]
) -> None:
    end = start + dt.timedelta(days=span)
    tasks = plan(exchanges=exchanges, start=start, end=end, step_days=step)

    days = [start + dt.timedelta(days=n) for n in range(0, span + 1, step)]
    assert len(tasks) == len(set(tasks)) == len(exchanges) * len(days)
    assert set(tasks) == {PriceTask("btc", e, d.isoformat()) for e in exchanges for d in days}
    if len(exchanges) > 1:
        assert all(x.exchange != y.exchange for x, y in zip(tasks, tasks[1:]))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"exchanges": [], "start": "2020-01-01"}, "empty"),
        ({"exchanges": "kraken", "start": "2020-01-01"}, "exchanges must be"),
        ({"start": "latest"}, "start must be YYYY-MM-DD"),
        ({"start": "2020-01-01", "end": "01/02/2020"}, "end must be"),
        ({"start": "2020-02-30"}, "start must be"),
        ({"start": "2020-01-02", "end": "2020-01-01"}, "before start"),
        ({"start": "2020-01-01", "step_days": 0}, "step_days"),
        ({"start": "2020-01-01", "step_days": 1.5}, "step_days"),
    ],
)
def test_bad_params_are_rejected(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskPlanner(**params)


def test_bad_symbol_fails_the_item() -> None:
    planner = TaskPlanner(exchanges=["a"], start="2020-01-01", end="2020-01-01")
    with pytest.raises(ValueError, match="symbol"):
        list(planner.process("  "))


# --- against the price server: exchanges "all" and end "latest" -------------------


def test_all_exchanges_and_latest_end_come_from_the_server(price_server) -> None:
    dataset = price_server.dataset
    last = dt.date.fromisoformat(requests.get(f"{price_server.url}/days", timeout=5).json()["last"])
    start = last - dt.timedelta(days=2)
    planner = TaskPlanner(base_url=price_server.url, exchanges="all", start=start, end="latest")
    tasks = list(planner.process("btc"))
    tasks += list(planner.process("eth"))  # the server is asked once per object, answers are kept
    planner.close()

    days = [(start + dt.timedelta(days=n)).isoformat() for n in range(3)]
    expected = {PriceTask(s, e, d) for s in ("btc", "eth") for e in dataset.exchanges for d in days}
    assert len(tasks) == len(expected)
    assert set(tasks) == expected


def test_latest_before_start_fails_the_item(price_server) -> None:
    planner = TaskPlanner(base_url=price_server.url, exchanges=["a"], start="2021-01-01", end="latest")
    with pytest.raises(ValueError, match="before start"):
        list(planner.process("btc"))
    planner.close()


def test_prepare_stage_checks_exchanges_and_range(price_server) -> None:
    TaskPlanner.prepare_stage({"base_url": price_server.url, "exchanges": ["kraken"], "start": "2020-04-01"})

    with pytest.raises(ValueError, match="unknown exchange.*binance"):
        TaskPlanner.prepare_stage({"base_url": price_server.url, "exchanges": ["binance"], "start": "2020-04-01"})
    with pytest.raises(ValueError, match="latest day .* is before start 2021-01-01"):
        TaskPlanner.prepare_stage({"base_url": price_server.url, "start": "2021-01-01"})
    with pytest.raises(ValueError, match="step_days"):
        TaskPlanner.prepare_stage({"base_url": price_server.url, "start": "2020-04-01", "step_days": -1})
