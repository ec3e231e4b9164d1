"""A process that lives through a database restart (the service, the dashboard) finds the database again at once."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from workers.postgres_worker import PostgresWorker


def test_the_writers_start_up_check_passes_right_after_the_database_restarted(embedded_postgres, database_url):
    if database_url != embedded_postgres.url:
        pytest.skip("TEST_DATABASE_URL is set: the database cannot be restarted from here")
    tables = [f"prices_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    PostgresWorker.prepare_stage({"database_url": database_url, "table": tables[0]})  # a pooled connection now
    embedded_postgres.stop()
    embedded_postgres.start()
    try:
        # The next run's check (a table not made yet): not "cannot reach" because of a dead pooled connection.
        PostgresWorker.prepare_stage({"database_url": database_url, "table": tables[1]})
    finally:
        engine = create_engine(database_url, poolclass=NullPool)
        with engine.begin() as conn:
            for table in tables:
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
