"""The synthetic dataset: shape, determinism per seed, realism, and the Dataset API."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from crypto_server import Dataset, UnknownName, load_dataset, synthetic

EXCHANGES = [
    "bitfinex", "bitstamp", "bittrex", "cexio", "coinbase-pro", "hitbtc",
    "huobi", "kraken", "mexbt", "okex", "poloniex",
]  # fmt: skip


def all_prices(ds: Dataset) -> dict[tuple[str, str, dt.date], dict | None]:
    return {(e, s, d): ds.price(e, s, d) for e in ds.exchanges for s in ds.symbols for d in ds.days}


def test_default_shape(dataset: Dataset) -> None:
    assert dataset.exchanges == EXCHANGES
    assert len(dataset.symbols) == 100
    assert dataset.symbols == sorted(dataset.symbols)
    assert all(s == s.lower() for s in dataset.symbols)
    assert {"btc", "eth", "ltc", "xrp", "usdt"} <= set(dataset.symbols)
    assert (dataset.days.first, dataset.days.last) == (dt.date(2019, 12, 20), dt.date(2020, 4, 30))
    assert len(dataset.days) == 133 == len(list(dataset.days))


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    # Built from scratch (the cache would hand back the same object).
    build = synthetic.build.__wrapped__
    first, last = dt.date(2020, 1, 1), dt.date(2020, 1, 20)
    a, b, c = build(7, 15, first, last), build(7, 15, first, last), build(8, 15, first, last)
    assert all_prices(a) == all_prices(b)
    pa, pc = all_prices(a), all_prices(c)
    assert pa.keys() == pc.keys()
    assert sum(pa[k] != pc[k] for k in pa) > 0.9 * len(pa)


def test_more_assets_keep_the_numbers_of_the_first_ones() -> None:
    small = load_dataset(seed=3, assets=5, last_day="2020-01-10")
    large = load_dataset(seed=3, assets=120, last_day="2020-01-10")
    assert set(small.symbols) < set(large.symbols)
    for symbol in small.symbols:
        for exchange in small.exchanges:
            for day in small.days:
                assert small.price(exchange, symbol, day) == large.price(exchange, symbol, day)


def test_made_up_assets_past_the_real_list_are_unique() -> None:
    ds = load_dataset(assets=400, last_day="2019-12-25")
    assert len(ds.symbols) == len(set(ds.symbols)) == 400
    names = [ds.asset(s).name for s in ds.symbols]
    assert len(set(names)) == 400
    assert ds.asset("btc").name == "Bitcoin"


def test_prices_look_like_real_daily_bars(dataset: Dataset) -> None:
    prices = [p for p in all_prices(dataset).values() if p is not None]
    for p in prices:
        assert 0 < p["low"] <= min(p["open"], p["close"]) <= max(p["open"], p["close"]) <= p["high"]
        assert p["volume"] > 0
    btc = [dataset.price(e, "btc", "2020-01-15") for e in dataset.exchanges]
    closes = [p["close"] for p in btc if p]
    assert 1000 < min(closes) and max(closes) < 100_000
    assert max(closes) / min(closes) < 1.03, "exchanges trade close to each other"
    assert len(set(closes)) > 1, "but not at exactly the same price"
    usdt = [p["close"] for e in dataset.exchanges for d in dataset.days if (p := dataset.price(e, "usdt", d))]
    assert all(0.97 < c < 1.03 for c in usdt), "a stablecoin stays near one dollar"


def test_some_days_are_missing_like_real_data(dataset: Dataset) -> None:
    prices = all_prices(dataset)
    missing = sum(p is None for p in prices.values())
    assert 0.01 * len(prices) < missing < 0.3 * len(prices)
    assert len(dataset) == len(prices) - missing
    # Holes inside a listed series, not only whole pairs left out.
    btc_kraken = [dataset.price("kraken", "btc", d) for d in dataset.days]
    assert any(p is not None for p in btc_kraken)


def test_price_returns_the_api_shape(dataset: Dataset) -> None:
    day = next(d for d in dataset.days if dataset.price("kraken", "eth", d))
    price = dataset.price("kraken", "ETH", day.isoformat())
    assert list(price) == ["exchange", "symbol", "open", "high", "low", "close", "volume", "day"]
    assert price["exchange"] == "kraken" and price["symbol"] == "eth" and price["day"] == day.isoformat()
    assert price == dataset.price("kraken", "eth", day)
    price["close"] = -1  # a copy: the dataset is not changed through it
    assert dataset.price("kraken", "eth", day)["close"] != -1


@pytest.mark.parametrize(
    ("exchange", "symbol", "message"),
    [("nowhere", "btc", "exchange"), ("Kraken", "btc", "exchange"), ("kraken", "nocoin", "symbol")],
)
def test_unknown_names_raise(dataset: Dataset, exchange: str, symbol: str, message: str) -> None:
    with pytest.raises(UnknownName, match=message):
        dataset.price(exchange, symbol, "2020-01-01")


@pytest.mark.parametrize("day", ["2020-1-01", "20200101", "2020-02-30", "yesterday", ""])
def test_malformed_days_raise_value_error(dataset: Dataset, day: str) -> None:
    with pytest.raises(ValueError):
        dataset.price("kraken", "btc", day)


def test_days_outside_the_range_have_no_price(dataset: Dataset) -> None:
    assert dataset.price("kraken", "btc", "2019-12-19") is None
    assert dataset.price("kraken", "btc", "2020-05-01") is None
    assert dataset.price("kraken", "btc", "1999-01-01") is None


def test_quote_is_the_mean_close_of_the_latest_day(dataset: Dataset) -> None:
    quote = dataset.quote("BTC")
    last = dataset.days.last
    closes = [p["close"] for e in dataset.exchanges if (p := dataset.price(e, "btc", last))]
    assert quote["symbol"] == "BTC" and quote["day"] == last.isoformat()
    assert quote["exchanges"] == len(closes)
    assert math.isclose(quote["price"], sum(closes) / len(closes), rel_tol=1e-5)
    with pytest.raises(UnknownName):
        dataset.quote("nocoin")


def test_dataset_is_immutable(dataset: Dataset) -> None:
    with pytest.raises(AttributeError):
        dataset.source = "changed"  # type: ignore[misc]
    dataset.symbols.append("zzz")  # a copy
    assert "zzz" not in dataset.symbols


@pytest.mark.parametrize(
    "kwargs",
    [{"assets": 0}, {"assets": 10**6}, {"first_day": "2020-02-01", "last_day": "2020-01-01"}, {"first_day": "x"}],
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        load_dataset(**kwargs)
