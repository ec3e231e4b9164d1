"""Where a pipeline's prices are stored: the database and table its writer stage writes to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine import PipelineConfig, PipelineConfigError, load_pipeline
from store.schema import DEFAULT_TABLE, check_table_name
from workers.database import REPO_ROOT, DatabaseUnavailable, mask_url, normalize_database_url, resolve_database_url
from workers.postgres_worker import PostgresWorker


@dataclass(frozen=True)
class PriceStore:
    """A price table in a database: ``url`` is a normalised SQLAlchemy URL (PostgreSQL or SQLite)."""

    url: str
    table: str = DEFAULT_TABLE

    def __str__(self) -> str:
        """The URL with its password masked, and the table: fit for messages and logs."""
        return f"{mask_url(self.url)} table {self.table}"


def store_for_pipeline(config: PipelineConfig) -> PriceStore:
    """The database and table the pipeline's writer stage writes to.

    The writer is the first stage whose worker is a ``PostgresWorker`` (or a subclass).
    Its ``database_url`` and ``table`` params win; without ``database_url`` the
    database is what :func:`workers.database.resolve_database_url` gives, as the
    writer would use (this starts the embedded PostgreSQL if that is the one).
    Raises :class:`DatabaseUnavailable` with one line when the pipeline has no
    writer, its params are wrong, or the embedded server cannot start.
    """
    writer = next((s for s in config.stages if issubclass(s.worker_class, PostgresWorker)), None)
    if writer is None:
        raise DatabaseUnavailable(f"pipeline {config.name} has no PostgresWorker stage: it stores no prices")
    params = writer.params
    try:
        table = check_table_name(params.get("table", DEFAULT_TABLE))
        url = params.get("database_url")
        if url is not None and not isinstance(url, str):
            raise ValueError(f"database_url must be a text URL, not {url!r}")
        return PriceStore(normalize_database_url(url or resolve_database_url()), table)
    except ValueError as exc:  # a bad URL or name: sqlalchemy's ArgumentError is a ValueError too
        raise DatabaseUnavailable(f"stage {writer.name}: {exc}") from exc


def default_store(pipeline: str | Path | None = None) -> PriceStore:
    """The store of ``pipeline`` (default ``$PIPELINE_LOCATION``), read as ``python main.py`` reads it.

    A relative path that does not exist from the current directory is taken from the
    repository root, as ``.env.local`` names it. The environment is used as it is:
    ``main.py`` has loaded ``.env.local`` into it before any subcommand runs.
    Raises :class:`PipelineConfigError` for a missing or bad pipeline file,
    :class:`DatabaseUnavailable` as :func:`store_for_pipeline`.
    """
    return store_for_pipeline(load_pipeline(pipeline_path(pipeline)))


def pipeline_path(option: str | Path | None) -> Path:
    """The pipeline file ``option`` names, else ``$PIPELINE_LOCATION``; :class:`PipelineConfigError` if neither."""
    value = option or os.environ.get("PIPELINE_LOCATION")
    if not value:
        raise PipelineConfigError("no pipeline given: pass --pipeline PATH or set PIPELINE_LOCATION in .env.local")
    path = Path(value)
    # .env.local names paths from the repository root; let that work from any directory.
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return path
