"""``python main.py export``, ``db`` and ``--show-db`` as a user runs them, on a pipeline's own store."""

from __future__ import annotations

import csv
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from store.query import iter_prices
from store.target import PriceStore
from tests.store.conftest import drop, main_py, price_pipeline, record, write

ITEMS = [["BTC", "kraken", 40], ["BTC", "bitstamp", 30], ["ETH", "kraken", 20], ['we,"ird\u00e9', "kraken", 3]]
ROWS = sum(days for _, _, days in ITEMS)


def _run_pipeline(tmp_path: Path, writer_params: dict, *, rate: float = 1.0, name: str = "p") -> Path:
    pipeline = price_pipeline(tmp_path / f"{name}.yaml", items=ITEMS, writer_params=writer_params, rate=rate,
                              name=name)
    result = main_py("--pipeline", str(pipeline), "--no-progress", "--run-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return pipeline


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, PriceStore]]:
    """A pipeline run by main.py that stored ROWS rows; its database_url is in the YAML. Read-only for the tests."""
    directory = tmp_path_factory.mktemp("stored")
    if request.param == "sqlite":
        store = PriceStore(f"sqlite:///{directory / 'yaml.db'}")
    else:
        store = PriceStore(request.getfixturevalue("database_url"), f"prices_{uuid.uuid4().hex[:12]}")
    pipeline = _run_pipeline(directory, {"database_url": store.url, "table": store.table})
    yield pipeline, store
    if request.param == "postgresql":
        drop(store)


def _key(row: dict) -> tuple:
    return row["symbol"], row["exchange"], row["price_date"]


def test_export_parquet_round_trips_every_row_and_type(stored: tuple[Path, PriceStore], tmp_path: Path) -> None:
    pipeline, store = stored
    result = main_py("export", "-o", "prices.parquet", cwd=tmp_path, env={"PIPELINE_LOCATION": str(pipeline)})
    assert result.returncode == 0, result.stderr
    assert f"exported {ROWS} row(s)" in result.stderr
    table = pq.read_table(tmp_path / "prices.parquet")
    assert [str(t) for t in table.schema.types] == [
        "string", "string", "date32[day]", "double", "double", "double", "double", "double", "timestamp[us, tz=UTC]"]
    exported = table.to_pylist()
    stored_rows = [{f: getattr(row, f) for f in row.__slots__} for row in iter_prices(store)]
    assert len(exported) == ROWS
    assert exported == stored_rows  # every field, with its type: dates, floats, aware UTC datetimes
    assert not list(tmp_path.glob("*.partial"))


def test_export_csv_and_jsonl_read_back_to_the_stored_rows(stored: tuple[Path, PriceStore], tmp_path: Path) -> None:
    pipeline, store = stored
    env = {"PIPELINE_LOCATION": str(pipeline)}
    expected = [{f: getattr(row, f) for f in row.__slots__} for row in iter_prices(store)]
    assert main_py("export", "-o", "p.csv", cwd=tmp_path, env=env).returncode == 0
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as file:
        from_csv = list(csv.DictReader(file))
    jsonl = main_py("export", "--format", "jsonl", cwd=tmp_path, env=env)  # to standard output
    assert jsonl.returncode == 0, jsonl.stderr
    from_json = [json.loads(line) for line in jsonl.stdout.splitlines()]
    for rows in (from_csv, from_json):
        assert len(rows) == ROWS
        for got, want in zip(rows, expected):
            assert got["symbol"] == want["symbol"] and got["exchange"] == want["exchange"]
            assert dt.date.fromisoformat(got["price_date"]) == want["price_date"]
            assert dt.datetime.fromisoformat(got["extracted_time"]) == want["extracted_time"]
            for field in ("open", "high", "low", "close", "volume"):
                assert float(got[field]) == want[field]  # exactly: the text reads back to the same float


def test_export_filters(stored: tuple[Path, PriceStore], tmp_path: Path) -> None:
    pipeline, _ = stored
    result = main_py("export", "--format", "jsonl", "--symbol", "BTC", "--exchange", "kraken", "--exchange", "nope",
                     "--since", "2024-01-05", "--until", "2024-01-07", "--pipeline", str(pipeline), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["symbol"], r["exchange"], r["price_date"]) for r in rows] == [
        ("BTC", "kraken", f"2024-01-0{day}") for day in (5, 6, 7)]


@pytest.mark.parametrize("args, message", [
    (["-o", "prices.txt"], "cannot tell the format from 'prices.txt'"),
    (["-o", "prices.csv", "--format", "parquet"], "'prices.csv' names csv but --format is parquet"),
    (["--format", "parquet"], "parquet needs a file"),
    (["--since", "2024-02-01", "--until", "2024-01-01"], "--since 2024-02-01 is after --until 2024-01-01"),
    (["-o", "missing/prices.csv"], "directory missing does not exist"),
    (["--since", "yesterday"], "not a day in the form YYYY-MM-DD: 'yesterday'"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    pipeline = price_pipeline(tmp_path / "p.yaml", items=[["BTC", "kraken", 1]], writer_params={"database_url": "sqlite:///x.db"})
    result = main_py("export", "--pipeline", str(pipeline), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]  # the last line says it (argparse prints usage first)
    assert not list(tmp_path.glob("prices*"))


def test_an_unreachable_database_is_one_line_exit_2_and_leaves_no_file(tmp_path: Path) -> None:
    url = "postgresql://u:secret@127.0.0.1:1/x"
    pipeline = price_pipeline(tmp_path / "p.yaml", items=[["BTC", "kraken", 1]], writer_params={"database_url": url})
    for args in (["export", "-o", "out.parquet"], ["db"], ["--show-db"]):
        result = main_py(*args, "--pipeline", str(pipeline), cwd=tmp_path)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: cannot reach postgresql+psycopg2://u:***@127.0.0.1:1/x: ")
        assert len(result.stderr.splitlines()) == 1 and "secret" not in result.stderr
    assert not list(tmp_path.glob("out*"))


def test_an_export_that_fails_keeps_the_old_file(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    write(PriceStore(f"sqlite:///{db}"), [record("BTC", "kraken", day) for day in range(5)])
    pipeline = price_pipeline(tmp_path / "p.yaml", items=[["BTC", "kraken", 1]], writer_params={"database_url": f"sqlite:///{db}"})
    (tmp_path / "out.csv").write_text("the previous export\n")
    (tmp_path / "out.csv.partial").mkdir()  # the partial file cannot be made: the write fails at once
    result = main_py("export", "-o", "out.csv", "--pipeline", str(pipeline), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot write out.csv: Is a directory")
    assert (tmp_path / "out.csv").read_text() == "the previous export\n"


def test_db_reads_the_database_url_in_the_yaml_not_the_environment(tmp_path: Path) -> None:
    yaml_db, env_db = tmp_path / "yaml.db", tmp_path / "env.db"
    write(PriceStore(f"sqlite:///{env_db}"), [record("WRONG", "db")])
    pipeline = _run_pipeline(tmp_path, {"database_url": f"sqlite:///{yaml_db}", "table": "prices_eur"}, rate=0.9)
    env = {"PIPELINE_LOCATION": str(pipeline), "DATABASE_URL": f"sqlite:///{env_db}"}
    result = main_py("db", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [f"database: sqlite:///{yaml_db}", f"open with: sqlite3 {yaml_db}"]
    assert lines[2] == f"table prices_eur: {ROWS} row(s), from 2024-01-01 to 2024-02-09"
    assert lines[3] == 'symbols (3): BTC, ETH, we,"ird\u00e9'
    assert lines[4] == "exchanges (2): bitstamp, kraken"
    # BTC traded the most: (100 + 39) x 0.9 x (1000 + 39) on kraken's newest day.
    assert lines[6].split() == ["BTC", "kraken", "2024-02-09", "close", "125.1", "volume", "1,039.00"]
    assert "WRONG" not in result.stdout
    assert main_py("--show-db", cwd=tmp_path, env=env).stdout == result.stdout


def test_db_of_an_empty_store_says_so(tmp_path: Path) -> None:
    pipeline = price_pipeline(tmp_path / "p.yaml", items=[["BTC", "kraken", 1]], writer_params={"database_url": "sqlite:///none.db"})
    result = main_py("db", "--pipeline", str(pipeline), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "table prices: no rows yet"


def test_psql_opens_the_pipelines_database(database_url: str, tmp_path: Path) -> None:
    pipeline = price_pipeline(tmp_path / "p.yaml", items=[["BTC", "kraken", 1]], writer_params={"database_url": database_url})
    result = main_py("--psql", "--pipeline", str(pipeline), cwd=tmp_path, env={"DATABASE_URL": "sqlite:///x.db"},
                     input="SELECT 40 + 2 AS answer;\n")
    assert result.returncode == 0, result.stderr
    assert "42" in result.stdout
