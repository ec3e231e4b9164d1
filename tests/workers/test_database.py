"""Database URL resolution, the embedded server and ``describe_database``."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import workers
from workers.database import (
    DEFAULT_PGDATA,
    DatabaseUnavailable,
    EmbeddedPostgres,
    default_embedded_postgres,
    describe_database,
    mask_url,
    normalize_database_url,
    psql_args,
    resolve_database_url,
)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
    ],
)
def test_normalize_maps_plain_postgres_urls_to_psycopg2(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_database_url_wins_over_postgres_variables() -> None:
    env = {"DATABASE_URL": "postgres://a:b@dbhost/crypto", "POSTGRES_HOST": "elsewhere"}
    assert resolve_database_url(env) == "postgresql+psycopg2://a:b@dbhost/crypto"


def test_database_url_may_be_sqlite() -> None:
    assert resolve_database_url({"DATABASE_URL": "sqlite:////tmp/x.db"}) == "sqlite:////tmp/x.db"


def test_postgres_variables_escape_special_characters_in_the_password() -> None:
    env = {
        "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "writer",
        "POSTGRES_PASSWORD": "p@ss/w:rd%?#",
        "POSTGRES_DB": "crypto",
    }
    url = make_url(resolve_database_url(env))
    assert (url.drivername, url.username, url.password) == ("postgresql+psycopg2", "writer", "p@ss/w:rd%?#")
    assert (url.host, url.port, url.database) == ("db.example", 6543, "crypto")


def test_postgres_variables_default_user_and_port() -> None:
    url = make_url(resolve_database_url({"POSTGRES_HOST": "db"}))
    assert (url.username, url.password, url.host, url.port) == ("postgres", None, "db", None)


def test_bad_postgres_port_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="POSTGRES_PORT"):
        resolve_database_url({"POSTGRES_HOST": "db", "POSTGRES_PORT": "54x"})


def test_resolution_logs_the_url_with_the_password_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="workers.database")
    resolve_database_url({"POSTGRES_HOST": "db", "POSTGRES_PASSWORD": "s3cret"})
    assert "postgres:***@db" in caplog.text
    assert "s3cret" not in caplog.text
    assert "s3cret" not in mask_url("postgresql://u:s3cret@h/db")


def test_default_embedded_server_lives_in_pgdata_at_the_repo_root() -> None:
    repo_root = Path(workers.__file__).resolve().parent.parent
    assert (repo_root / "workers" / "database.py").exists()
    assert DEFAULT_PGDATA == repo_root / ".pgdata"
    server = default_embedded_postgres()
    assert server is default_embedded_postgres()
    assert server.pgdata == DEFAULT_PGDATA


def test_without_configuration_the_embedded_server_is_started(embedded_postgres: EmbeddedPostgres) -> None:
    assert resolve_database_url({}, embedded=embedded_postgres) == embedded_postgres.url
    assert make_url(embedded_postgres.url).drivername == "postgresql+psycopg2"


def test_embedded_server_starts_once_when_many_threads_ask(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="workers.embedded_postgres")
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    server = EmbeddedPostgres(root / "pgdata", cleanup_mode=None)
    barrier = threading.Barrier(10)
    urls: list[str] = []

    def ask() -> None:
        barrier.wait()
        urls.append(server.start())

    threads = [threading.Thread(target=ask) for _ in range(10)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(urls) == 10 and len(set(urls)) == 1
        assert caplog.text.count("embedded PostgreSQL running") == 1
        engine = create_engine(urls[0], poolclass=NullPool)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not server.running


def test_embedded_server_that_cannot_start_raises_database_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    server = EmbeddedPostgres(tmp_path / "a-file" / "pgdata")
    with pytest.raises(DatabaseUnavailable, match="did not start"):
        server.start()


def test_data_from_another_postgresql_version_is_refused_in_one_line(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")  # as pgserver (PostgreSQL 16) left it
    with pytest.raises(DatabaseUnavailable) as info:
        EmbeddedPostgres(pgdata, cleanup_mode=None).start()
    message = str(info.value)
    assert "\n" not in message
    assert "made by PostgreSQL 16 and this is PostgreSQL 18" in message and "pgdata-pg16" in message
    assert not (pgdata / "postmaster.pid").exists()


def test_describe_embedded_database(embedded_postgres: EmbeddedPostgres) -> None:
    lines = describe_database(embedded_postgres.url, embedded=embedded_postgres, psql_command="open-me")
    text_ = "\n".join(lines)
    assert str(embedded_postgres.pgdata) in text_
    # It stops when the process exits, so a bare psql command line would not connect later.
    assert "open it with psql: open-me" in text_
    # An external server gets the command line itself.
    external = describe_database(embedded_postgres.url)
    assert any(line.startswith("open with psql: ") for line in external)


def test_psql_args_use_the_bundled_psql_and_the_socket(embedded_postgres: EmbeddedPostgres) -> None:
    args = psql_args(embedded_postgres.url)
    assert Path(args[0]).name == "psql" and Path(args[0]).exists()
    assert args[1:3] == ["-h", make_url(embedded_postgres.url).query["host"]]
    assert "s3cret" not in " ".join(psql_args("postgresql://u:s3cret@db.example:5433/crypto"))
    assert psql_args("postgresql://u:s3cret@db.example:5433/crypto")[1:] == [
        "-h", "db.example", "-p", "5433", "-U", "u", "-d", "crypto"]
    with pytest.raises(ValueError, match="not a PostgreSQL database"):
        psql_args("sqlite:///x.db")


def test_describe_sqlite_names_its_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert describe_database(url) == [f"database: {url}", f"open with: sqlite3 {tmp_path / 'empty.db'}"]
