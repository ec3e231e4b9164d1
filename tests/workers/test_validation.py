"""workers.validation: what a price record must be to be stored, what a symbol must be to be asked for."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import pytest

from workers.records import PriceRecord
from workers.validation import MAX_NAME_LENGTH, MAX_PRICE, MAX_VOLUME, InvalidPrice, check_price, clean_name

NOW = dt.datetime(2020, 4, 2, 12, tzinfo=dt.timezone.utc)
GOOD = PriceRecord("BTC", "kraken", dt.date(2020, 4, 1), 6400.0, 6700.0, 6200.0, 6600.0, 1500.0, NOW)
QUOTE = dataclasses.replace(GOOD, exchange="quote", open=None, high=None, low=None, volume=None)


def problem(record: PriceRecord | dict[str, Any]) -> str:
    with pytest.raises(InvalidPrice) as caught:
        check_price(record, "http://127.0.0.1/x")
    message = str(caught.value)
    assert message.startswith("invalid price from http://127.0.0.1/x: ") and len(message) < 200, message
    return message


@pytest.mark.parametrize("record", [
    GOOD,
    QUOTE,
    dataclasses.replace(GOOD, open=6200.0, close=6700.0),  # on the bounds of the day's range
    dataclasses.replace(GOOD, open=1, high=1, low=1, close=1, volume=0),  # ints, zero volume
    dataclasses.replace(QUOTE, close=4.2e-10),  # tiny prices exist (tokens quoted in BTC)
    dataclasses.replace(QUOTE, close=MAX_PRICE),
    dataclasses.replace(GOOD, volume=MAX_VOLUME),
    dataclasses.replace(GOOD, price_date=dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)),
    dataclasses.replace(GOOD, price_date=dt.date(1900, 1, 1)),
])
def test_valid_records_pass(record: PriceRecord) -> None:
    check_price(record)
    check_price(dataclasses.asdict(record))  # a writer's row: the same rules


@pytest.mark.parametrize(("changes", "reason"), [
    ({"close": -1.5}, "close -1.5 is not positive"),
    ({"open": 0.0}, "open 0.0 is not positive"),
    ({"close": math.nan}, "close nan is not finite"),
    ({"high": math.inf}, "high inf is not finite"),
    ({"low": -math.inf}, "low -inf is not finite"),
    ({"high": 1e308}, "high 1e+308 is over 1e+12"),
    ({"high": 10**400}, "high 1e400 (an integer) is over 1e+12"),
    ({"volume": -(10**5000)}, "volume -1e5000 (an integer) is negative"),
    ({"high": 6100.0}, "high 6100.0 is below low 6200.0"),
    ({"close": 6800.0}, "close 6800.0 is above high 6700.0"),
    ({"open": 6100.0}, "open 6100.0 is below low 6200.0"),
    ({"volume": -1}, "volume -1 is negative"),
    ({"volume": 1e21}, "volume 1e+21 is over 1e+20"),
    ({"close": True}, "close True is not a number"),
    ({"close": "6600"}, "close '6600' is not a number"),
    ({"close": "9" * 10_000_000}, "9999999999999' is not a number"),
    ({"price_date": dt.date(2999, 1, 1)}, "price_date 2999-01-01 is in the future"),
    ({"price_date": dt.date(1, 1, 1)}, "price_date 0001-01-01 is before 1900-01-01"),
    ({"price_date": "2020-04-01"}, "price_date '2020-04-01' is not a date"),
    ({"price_date": NOW}, "is not a date"),
    ({"symbol": ""}, "symbol '' is not a non-empty string"),
    ({"symbol": "B" * 10_000_000}, "symbol of 10,000,000 characters is longer than 32"),
    ({"exchange": "kra\x00ken"}, "exchange 'kra\\x00ken' holds a control character"),
])
def test_invalid_records_fail_naming_the_field_and_value(changes: dict[str, Any], reason: str) -> None:
    assert reason in problem(dataclasses.replace(GOOD, **changes))
    assert reason in problem({**dataclasses.asdict(GOOD), **changes})


def test_every_problem_is_named_once() -> None:
    message = problem(dataclasses.replace(GOOD, open=-1.0, close=math.nan, volume=-2.0))
    assert message.endswith("open -1.0 is not positive; close nan is not finite; volume -2.0 is negative")


def test_a_missing_field_of_a_row_counts_as_absent() -> None:
    row = dataclasses.asdict(QUOTE)
    del row["open"]
    check_price(row)


@pytest.mark.parametrize(("value", "cleaned"), [(" BTC ", "BTC"), ("BRK.B", "BRK.B"), ("X" * MAX_NAME_LENGTH, "X" * 32)])
def test_clean_name_strips(value: str, cleaned: str) -> None:
    assert clean_name(value) == cleaned


@pytest.mark.parametrize(("value", "reason"), [
    (None, "symbol None is not a non-empty string"),
    ("   ", "symbol '' is not a non-empty string"),
    (["BTC"] * 1_000_000, "symbol ['BTC', 'BTC', 'BTC', 'BTC', 'BTC', 'BTC', ...] is not a non-empty string"),
    ("A" * 10_000_000, "symbol of 10,000,000 characters is longer than 32: 'AAAA"),
    ("BTC\nETH", "holds a control character"),
])
def test_clean_name_refuses_with_a_short_message(value: Any, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        clean_name(value)
    assert reason in str(caught.value) and len(str(caught.value)) < 120
