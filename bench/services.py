"""The services a benchmark talks to: the bundled price server and an embedded PostgreSQL.

Both are context managers that stop what they started on the way out, whether
the block ends normally, on an error or on Ctrl+C.

The price server runs in a child process (``crypto_server.start_server_process``),
as a real server would: sharing the benchmark's interpreter would make client and
server compete for one GIL, and the figures would measure that contention rather
than the pipeline. Its request counters are asked for over the child's stdin/stdout.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import crypto_server

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent

@contextmanager
def price_server(
    *,
    sleep: float = 0.0,
    jitter: float = 0.0,
    seed: int = 0,
    assets: int | None = None,
    server_kind: str | None = None,
) -> Iterator[crypto_server.ServerProcess]:
    """The bundled price server in a child process for the block, with this latency, seed and
    number of assets (None: the server's default).

    ``server_kind`` is its WSGI server, ``"gevent"`` or ``"werkzeug"`` (None: the default).
    """
    with crypto_server.start_server_process(
        sleep=sleep, jitter=jitter, seed=seed, assets=assets, server=server_kind
    ) as server:
        log.info("price server %s in process %s (sleep %gs, jitter %gs)", server.url, server.pid, sleep, jitter)
        try:
            yield server
        finally:
            server.stop()
            log.info("price server stopped")


@contextmanager
def embedded_database() -> Iterator[str]:
    """An embedded PostgreSQL in a fresh temporary directory for the block; yields its URL.

    The server is stopped and its directory deleted at the end.
    """
    from workers.database import EmbeddedPostgres

    # A short path under /tmp keeps the Unix socket path under its length limit.
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    server = EmbeddedPostgres(root / "pgdata", cleanup_mode="stop")  # stop at exit too, as a safety net
    try:
        url = server.start()
        log.info("embedded PostgreSQL in %s", root)
        yield url
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
        log.info("embedded PostgreSQL stopped and deleted")


def empty_prices(url: str) -> None:
    """Empty the ``prices`` table if it exists, so every measurement inserts fresh rows."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if inspect(conn).has_table("prices"):
                conn.execute(text("TRUNCATE prices"))
    finally:
        engine.dispose()


def count_prices(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM prices")).scalar_one())
    finally:
        engine.dispose()


def libpq_params(url: str) -> dict[str, Any]:
    """``psycopg2.connect`` keyword arguments for a SQLAlchemy URL (host may be a socket directory)."""
    parsed = make_url(url)
    params: dict[str, Any] = {
        "dbname": parsed.database,
        "user": parsed.username,
        "host": parsed.host or parsed.query.get("host"),
    }
    if parsed.password:
        params["password"] = parsed.password
    if parsed.port:
        params["port"] = parsed.port
    return {k: v for k, v in params.items() if v is not None}
