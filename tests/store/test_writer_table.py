"""The writer's ``table`` param: two pipelines writing the same keys to different tables keep their own rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.query import iter_prices, summary
from store.schema import check_table_name
from store.target import PriceStore
from tests.store.conftest import drop, main_py, price_pipeline, record
from workers.postgres_worker import PostgresWorker

ITEMS = [["BTC", "kraken", 30], ["ETH", "bitstamp", 30]]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_pipelines_with_their_own_tables_never_overwrite_each_other(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        usd, eur = PriceStore(f"sqlite:///{tmp_path / 'p.db'}", "prices"), PriceStore(f"sqlite:///{tmp_path / 'p.db'}",
                                                                                      "prices_eur")
    else:
        base = request.getfixturevalue("pg_store")
        usd, eur = base, PriceStore(base.url, base.table + "_eur")
        request.addfinalizer(lambda: drop(eur))
    for store, rate in ((usd, 1.0), (eur, 0.9)):
        pipeline = price_pipeline(tmp_path / f"{store.table}.yaml", items=ITEMS, rate=rate, name=store.table,
                                  writer_params={"database_url": store.url, "table": store.table})
        result = main_py("--pipeline", str(pipeline), "--no-progress", "--run-dir", str(tmp_path / "runs"),
                         cwd=tmp_path, env={"COLUMNS": "500"})
        assert result.returncode == 0, result.stderr
        # The summary's hint names this pipeline, whose store is not the default pipeline's.
        assert f"rows written: 60 (look at them: python main.py --show-db --pipeline {pipeline})" in result.stdout
    usd_rows, eur_rows = list(iter_prices(usd)), list(iter_prices(eur))
    assert len(usd_rows) == len(eur_rows) == 60
    assert [r.close for r in usd_rows] == [100.0 + day for _ in ITEMS for day in range(30)]
    assert [r.close for r in eur_rows] == [(100.0 + day) * 0.9 for _ in ITEMS for day in range(30)]


def test_writers_of_two_tables_share_one_connection_pool(pg_store: PriceStore, request: pytest.FixtureRequest) -> None:
    # One engine per URL: both writers' temporary COPY staging tables live in the same sessions,
    # where a staging table named like the other's real table would hide it.
    other = PriceStore(pg_store.url, pg_store.table + "_staging")
    request.addfinalizer(lambda: drop(other))
    first = PostgresWorker(pg_store.url, table=pg_store.table, pool_size=1)
    second = PostgresWorker(other.url, table=other.table, pool_size=1)
    for round_ in range(3):
        first.process_batch([record("BTC", "k", day, close=10.0 + round_) for day in range(5)])
        second.process_batch([record("BTC", "k", day, close=20.0 + round_) for day in range(5)])
    assert [r.close for r in iter_prices(pg_store)] == [12.0] * 5
    assert [r.close for r in iter_prices(other)] == [22.0] * 5


@pytest.mark.parametrize("name", ["Prices", "prices-eur", "1prices", "", "p" * 33, "pg_prices", "a.b", "x y", None, 5])
def test_a_table_name_that_is_not_a_plain_identifier_is_refused(name: object) -> None:
    with pytest.raises(ValueError, match="table"):
        check_table_name(name)
    with pytest.raises(ValueError, match="table"):
        PostgresWorker("sqlite://", table=name)  # type: ignore[arg-type]


def test_a_bad_table_in_the_yaml_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    pipeline = price_pipeline(tmp_path / "p.yaml", items=ITEMS,
                              writer_params={"database_url": f"sqlite:///{tmp_path / 'p.db'}", "table": "EUR prices"})
    result = main_py("--pipeline", str(pipeline), "--no-progress", "--run-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2
    assert "table must be a name of lower-case letters" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "p.db").exists() or summary(PriceStore(f"sqlite:///{tmp_path / 'p.db'}")).rows == 0


def test_the_default_table_is_prices(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    PostgresWorker(url).process_batch([record()])
    assert summary(PriceStore(url, "prices")).rows == 1
