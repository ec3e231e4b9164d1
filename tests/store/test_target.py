"""store.target: the store a pipeline's writer stage writes to, read from the pipeline file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import PipelineConfigError, load_pipeline
from store.target import PriceStore, default_store, store_for_pipeline

W = "tests.engine.workers"


def pipeline(tmp_path: Path, writer_params: dict[str, Any] | None, name: str = "pipeline.yaml") -> Path:
    """A source stage feeding a PostgresWorker with ``writer_params`` (None: no writer at all)."""
    stages: list[dict[str, Any]] = [
        {"name": "Source", "location": W, "class": "Range", "input_values": [[0, 1]], "output_queues": "out"},
    ]
    if writer_params is None:
        stages.append({"name": "Sink", "location": W, "class": "Slow", "params": {"delay": 0}, "input_queue": "out"})
    else:
        stages.append({"name": "Writer", "location": "workers.postgres_worker", "class": "PostgresWorker",
                       "input_queue": "out", "params": writer_params})
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"queues": [{"name": "out"}], "workers": stages}, sort_keys=False))
    return path


def test_the_writer_params_win_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    config = load_pipeline(pipeline(tmp_path, {"database_url": f"sqlite:///{tmp_path / 'yaml.db'}",
                                               "table": "prices_eur"}))
    assert store_for_pipeline(config) == PriceStore(f"sqlite:///{tmp_path / 'yaml.db'}", "prices_eur")


def test_without_database_url_the_environment_decides_as_for_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example/crypto")
    config = load_pipeline(pipeline(tmp_path, {}))
    assert store_for_pipeline(config) == PriceStore("postgresql+psycopg2://u:p@db.example/crypto", "prices")


def test_a_pipeline_without_a_writer_or_with_a_bad_table_is_one_line(tmp_path: Path) -> None:
    from workers.database import DatabaseUnavailable

    with pytest.raises(DatabaseUnavailable, match="has no PostgresWorker stage"):
        store_for_pipeline(load_pipeline(pipeline(tmp_path, None)))
    config = load_pipeline(pipeline(tmp_path, {"database_url": "sqlite://", "table": "Prices; DROP"}))
    with pytest.raises(DatabaseUnavailable, match=r"^stage Writer: table must be .*not 'Prices; DROP'$"):
        store_for_pipeline(config)


def test_default_store_reads_pipeline_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pipeline(tmp_path, {"database_url": "sqlite:///x.db", "table": "t1"})
    monkeypatch.setenv("PIPELINE_LOCATION", str(path))
    assert default_store() == PriceStore("sqlite:///x.db", "t1")
    monkeypatch.delenv("PIPELINE_LOCATION")
    with pytest.raises(PipelineConfigError, match="no pipeline given"):
        default_store()


def test_a_store_prints_without_its_password() -> None:
    assert str(PriceStore("postgresql+psycopg2://u:secret@h/db", "prices_eur")) == (
        "postgresql+psycopg2://u:***@h/db table prices_eur"
    )
