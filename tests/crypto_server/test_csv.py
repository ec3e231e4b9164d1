"""Loading Cryptowatch CSV exports (--data-dir), from a small fixture and from broken files."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from crypto_server import DataError, load_dataset

from .conftest import CSV_DIR

HEADER = "CloseTime,OpenPrice,HighPrice,LowPrice,ClosePrice,Volume,VolumeUSD,DateTime\n"
GOOD_ROW = "1588032000,196.5,198.9,193.1,197.2,12001.2,2366636.6,2020-04-28\n"


def test_fixture_directory_loads() -> None:
    ds = load_dataset(CSV_DIR)
    assert ds.exchanges == ["bitstamp", "kraken"]
    assert ds.symbols == ["btc", "eth"]
    assert (ds.days.first, ds.days.last) == (dt.date(2020, 4, 27), dt.date(2020, 4, 30))
    assert len(ds) == 7
    assert ds.price("kraken", "BTC", "2020-04-28") == {
        "exchange": "kraken",
        "symbol": "btc",
        "open": 7690.1,
        "high": 7781.7,
        "low": 7627.1,
        "close": 7770.6,
        "volume": 422.61679263,
        "day": "2020-04-28",
    }
    assert ds.price("kraken", "btc", "2020-04-29") is None  # a hole in the file
    assert ds.price("bitstamp", "eth", "2020-04-29") is None  # no such file: known names, no price
    assert ds.asset("btc").name == "Bitcoin"


def test_seed_and_assets_do_not_apply_to_csv_data() -> None:
    assert load_dataset(CSV_DIR, seed=5, assets=3).symbols == ["btc", "eth"]


def test_unknown_symbols_get_a_plain_name(tmp_path: Path) -> None:
    (tmp_path / "kraken_zzz.csv").write_text(HEADER + GOOD_ROW)
    ds = load_dataset(tmp_path)
    assert ds.asset("zzz").name == "ZZZ" and ds.asset("zzz").founded is None


def test_header_only_file_is_a_known_pair_without_prices(tmp_path: Path) -> None:
    shutil.copy(CSV_DIR / "kraken_eth.csv", tmp_path)
    (tmp_path / "okex_eth.csv").write_text(HEADER)
    ds = load_dataset(tmp_path)
    assert ds.exchanges == ["kraken", "okex"]
    assert ds.price("okex", "eth", "2020-04-28") is None


def test_columns_in_another_order_and_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "kraken_eth.csv").write_text(
        "\ufeffDateTime,Volume,VolumeUSD,ClosePrice,LowPrice,HighPrice,OpenPrice,CloseTime\r\n"
        "2020-04-28,12001.2,2366636.6,197.2,193.1,198.9,196.5,1588032000\r\n",
        newline="",
    )
    assert load_dataset(tmp_path).price("kraken", "eth", "2020-04-28")["open"] == 196.5


@pytest.mark.parametrize(
    ("name", "body", "where", "says"),
    [
        ("kraken_btc.csv", HEADER + GOOD_ROW.replace("196.5", "abc"), ":2:", "OpenPrice is not a number"),
        ("kraken_btc.csv", HEADER + GOOD_ROW + "1,2,3\n", ":3:", "expected 8 fields, found 3"),
        ("kraken_btc.csv", HEADER + GOOD_ROW.replace("2020-04-28", "28/04/2020"), ":2:", "bad DateTime"),
        ("kraken_btc.csv", HEADER + GOOD_ROW + GOOD_ROW, ":3:", "second row for 2020-04-28"),
        ("kraken_btc.csv", HEADER + GOOD_ROW.replace("12001.2", "-5"), ":2:", "Volume must be"),
        ("kraken_btc.csv", HEADER + GOOD_ROW.replace("197.2", "nan"), ":2:", "ClosePrice must be"),
        ("kraken_btc.csv", HEADER.replace("Volume,", "") + GOOD_ROW, ":1:", "lacks column(s) Volume"),
        ("kraken_btc.csv", "", ":1:", "empty file"),
        ("kraken_btc.csv", HEADER + '1,"2,3\n', ":", "malformed CSV"),
        ("kraken-btc.csv", HEADER + GOOD_ROW, "kraken-btc.csv", "<exchange>_<symbol>.csv"),
        ("Kraken_BTC.csv", HEADER + GOOD_ROW, "Kraken_BTC.csv", "lower case"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path: Path, name: str, body: str, where: str, says: str) -> None:
    shutil.copy(CSV_DIR / "kraken_eth.csv", tmp_path)
    (tmp_path / name).write_text(body)
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path)
    message = str(error.value)
    assert f"{tmp_path / name}{where}" in message or (where == name and name in message)
    assert says in message


def test_binary_file(tmp_path: Path) -> None:
    (tmp_path / "kraken_btc.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="kraken_btc.csv: not UTF-8"):
        load_dataset(tmp_path)


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no <exchange>_<symbol>.csv files"):
        load_dataset(tmp_path)
    (tmp_path / "kraken_btc.csv").write_text(HEADER)
    with pytest.raises(DataError, match="no price rows"):
        load_dataset(tmp_path)
