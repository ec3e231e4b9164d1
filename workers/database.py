"""Which database the pipeline writes to, and the embedded PostgreSQL behind the default.

Resolution (:func:`resolve_database_url`), first match wins:

1. ``DATABASE_URL``: any SQLAlchemy URL (``postgresql://`` is read as psycopg2).
2. ``POSTGRES_HOST`` (with ``POSTGRES_USER``, ``POSTGRES_PASSWORD``,
   ``POSTGRES_PORT``, ``POSTGRES_DB``): an external PostgreSQL.
3. Otherwise an embedded PostgreSQL (:mod:`workers.embedded_postgres`) with its
   data in ``.pgdata/`` at the repository root, started on first use, kept
   between runs, shared by runs at once, and stopped when the last run using
   it exits.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from workers.db_errors import DatabaseUnavailable, first_line  # noqa: F401
# DatabaseUnavailable, first_line and EmbeddedPostgres are imported from here by callers.
from workers.embedded_postgres import EmbeddedPostgres
from workers.postmaster import bin_dir

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The directory holding main.py (the parent of the ``workers`` package)."""

DEFAULT_PGDATA = REPO_ROOT / ".pgdata"
"""Data directory of the default embedded PostgreSQL."""

def normalize_database_url(url: str | URL) -> str:
    """Return ``url`` as a string, with ``postgresql://`` / ``postgres://`` mapped to psycopg2.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not installed.
    Other URLs (``sqlite:///...``, an explicit ``postgresql+driver://``) pass unchanged.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str | URL) -> str:
    """``url`` with its password replaced by ``***``, for logs and messages.

    That includes a password given as a query parameter (``?password=...``,
    ``?sslpassword=...``), which libpq accepts as well as the ``user:password@`` form.
    """
    try:
        parsed = make_url(url)
        hidden = {key: "***" for key in parsed.query if "password" in key.lower()}
        # Query values are percent-encoded when rendered; show the mask as the password's is.
        return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except Exception:  # an unparsable URL must not leak through an error message either
        return "<unparsable database URL>"


_default_embedded: EmbeddedPostgres | None = None
# Several threads may resolve the URL at once; they must share one server object.
_default_embedded_lock = threading.Lock()


def default_embedded_postgres() -> EmbeddedPostgres:
    """The process-wide embedded server in :data:`DEFAULT_PGDATA` (not started by this call)."""
    global _default_embedded
    with _default_embedded_lock:
        if _default_embedded is None:
            _default_embedded = EmbeddedPostgres(DEFAULT_PGDATA)
        return _default_embedded


def resolve_database_url(
    env: Mapping[str, str] = os.environ, *, embedded: EmbeddedPostgres | None = None
) -> str:
    """The database URL the environment asks for (see the module docstring).

    When neither ``DATABASE_URL`` nor ``POSTGRES_HOST`` is set, ``embedded``
    (default: :func:`default_embedded_postgres`) is started if needed and its URL
    returned. Raises :class:`DatabaseUnavailable` if that server cannot start.
    """
    if env.get("DATABASE_URL"):
        source, url = "DATABASE_URL", normalize_database_url(env["DATABASE_URL"])
    elif env.get("POSTGRES_HOST"):
        source, url = "POSTGRES_* variables", _url_from_postgres_vars(env)
    else:
        server = embedded if embedded is not None else default_embedded_postgres()
        source, url = f"embedded PostgreSQL in {server.pgdata}", server.start()
    log.debug("database %s (from %s)", mask_url(url), source)
    return url


def _url_from_postgres_vars(env: Mapping[str, str]) -> str:
    port = env.get("POSTGRES_PORT") or None
    if port is not None and not port.isdigit():
        raise ValueError(f"POSTGRES_PORT must be a number, got {port!r}")
    # URL.create escapes what needs escaping (an '@' or '/' in the password, for one).
    url = URL.create(
        "postgresql+psycopg2",
        username=env.get("POSTGRES_USER") or "postgres",
        password=env.get("POSTGRES_PASSWORD") or None,
        host=env["POSTGRES_HOST"],
        port=int(port) if port is not None else None,
        database=env.get("POSTGRES_DB") or None,
    )
    return url.render_as_string(hide_password=False)


def describe_database(
    url: str, *, embedded: EmbeddedPostgres | None = None, psql_command: str = "python main.py --psql"
) -> list[str]:
    """Lines saying where the database at ``url`` is and how to open it (its password masked).

    ``embedded`` is the server behind ``url`` if it is an embedded one; by default
    the process-wide embedded server is recognised by its URL. An embedded server
    stops when the last process using it exits, so it is opened with
    ``psql_command`` (which keeps it running meanwhile), not a bare psql line.
    """
    url = normalize_database_url(url)
    parsed = make_url(url)
    if embedded is None and _default_embedded is not None and _default_embedded.running:
        if _default_embedded.url == url:
            embedded = _default_embedded

    lines = [f"database: {mask_url(url)}"]
    if embedded is not None:
        lines.append(f"embedded PostgreSQL, data in {embedded.pgdata}")
        lines.append(f"open it with psql: {psql_command} (the server runs while psql does)")
    elif parsed.get_backend_name() == "postgresql":
        lines.append(f"open with psql: {shlex.join(psql_args(url))}")
        if parsed.password:
            lines.append("  (psql asks for the password; or set PGPASSWORD)")
    elif parsed.get_backend_name() == "sqlite":
        lines.append(f"open with: sqlite3 {shlex.quote(parsed.database or ':memory:')}")
    return lines


def psql_args(url: str) -> list[str]:
    """The psql command line for a PostgreSQL ``url`` (the psql shipped with the embedded server if present).

    The password is not in it: psql asks, or reads ``PGPASSWORD``.
    """
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"{mask_url(url)} is not a PostgreSQL database")
    args = [str(_psql_path())]
    host = parsed.host or parsed.query.get("host")  # a Unix socket directory comes as ?host=
    if host:
        args += ["-h", str(host)]
    if parsed.port:
        args += ["-p", str(parsed.port)]
    args += ["-U", parsed.username or "postgres", "-d", parsed.database or parsed.username or "postgres"]
    return args


def _psql_path() -> Path | str:
    """The psql shipped with the embedded server, else plain ``psql`` from PATH."""
    try:
        psql = bin_dir() / ("psql.exe" if os.name == "nt" else "psql")
    except ImportError:
        return "psql"
    return psql if psql.exists() else "psql"
