"""store.export: every format holds every row and value; a file is written whole or not at all."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from store.export import export_to_file, format_for, write_parquet, write_text
from store.query import PriceRow
from store.target import PriceStore
from tests.store.conftest import MAIN, price_pipeline, record, write
from workers.database import DatabaseUnavailable

T = dt.datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=dt.timezone.utc)


def rows(count: int) -> list[PriceRow]:
    """``count`` rows, some with missing values and names that need quoting."""
    return [
        PriceRow(f"S{i // 10},\"{i % 3}\"\u00e9", "kraken", dt.date(2024, 1, 1) + dt.timedelta(days=i % 10),
                 None if i % 4 == 0 else 1.0 + i / 3, 2.0 + i, 0.5 + i / 7, 1.5 + i * 1e-9, None if i % 5 == 0 else i * 0.1,
                 T)
        for i in range(count)
    ]


def test_parquet_keeps_every_row_and_value_across_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("store.export._ARROW_BATCH", 7)
    monkeypatch.setattr("store.export.PARQUET_ROW_GROUP", 20)
    expected = rows(95)
    assert write_parquet(iter(expected), tmp_path / "p.parquet") == 95
    file = pq.ParquetFile(tmp_path / "p.parquet")
    assert file.metadata.num_row_groups > 1
    assert [PriceRow(**row) for row in file.read().to_pylist()] == expected


def test_an_empty_export_is_a_parquet_file_with_the_columns(tmp_path: Path) -> None:
    assert write_parquet(iter([]), tmp_path / "p.parquet") == 0
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == 0 and table.column_names == list(PriceRow.__slots__)


def test_csv_and_jsonl_texts() -> None:
    out = io.StringIO()
    assert write_text(iter(rows(2)), "csv", out) == 2
    assert out.getvalue().splitlines() == [
        "symbol,exchange,price_date,open,high,low,close,volume,extracted_time",
        '"S0,""0""\u00e9",kraken,2024-01-01,,2.0,0.5,1.5,,2024-05-01T12:00:00.654321+00:00',
        '"S0,""1""\u00e9",kraken,2024-01-02,1.3333333333333333,3.0,0.6428571428571428,1.500000001,0.1,'
        "2024-05-01T12:00:00.654321+00:00",
    ]
    out = io.StringIO()
    write_text(iter(rows(1)), "jsonl", out)
    assert json.loads(out.getvalue()) == {
        "symbol": 'S0,"0"\u00e9', "exchange": "kraken", "price_date": "2024-01-01", "open": None, "high": 2.0,
        "low": 0.5, "close": 1.5, "volume": None, "extracted_time": "2024-05-01T12:00:00.654321+00:00"}


def test_format_from_the_suffix() -> None:
    assert [format_for(name) for name in ("a.csv", "a.JSONL", "a.ndjson", "a.parquet", "a.pq", "a.txt", "a")] == [
        "csv", "jsonl", "jsonl", "parquet", "parquet", None, None]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("error", [DatabaseUnavailable("connection lost"), KeyboardInterrupt()])
def test_an_export_cut_short_leaves_the_old_file_and_no_partial(tmp_path: Path, fmt: str,
                                                                 error: BaseException) -> None:
    def failing() -> Iterator[PriceRow]:
        yield from rows(50)
        raise error

    path = tmp_path / f"out.{fmt}"
    path.write_bytes(b"the previous export")
    with pytest.raises(type(error)):
        export_to_file(failing(), fmt, path)
    assert path.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_export_to_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    write(PriceStore(f"sqlite:///{db}"), [record(f"S{i}", "kraken", day) for i in range(100) for day in range(30)])
    pipeline = price_pipeline(tmp_path / "p.yaml", items=[["BTC", "kraken", 1]],
                              writer_params={"database_url": f"sqlite:///{db}"})
    process = subprocess.Popen([sys.executable, str(MAIN), "export", "--pipeline", str(pipeline)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith("symbol,")
    process.stdout.close()  # as `| head -1` does
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert stderr == "export stopped: standard output was closed\n"

