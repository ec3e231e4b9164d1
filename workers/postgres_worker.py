"""The sink of the price pipeline: batched, idempotent upserts into a price table (``prices`` by default).

Each row is keyed by (symbol, exchange, price_date); writing the same key again
updates it, so re-running a pipeline (or retrying a batch after a lost
connection) never duplicates a row. PostgreSQL (psycopg2) and SQLite are supported.
Connections, their timeouts and the bound on each write are in
:mod:`workers.postgres_connection`.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
import psycopg2
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    StatementError,
)

from engine.contract import ItemsFailed
from workers.database import (
    DatabaseUnavailable,
    first_line,
    mask_url,
    normalize_database_url,
    resolve_database_url,
)
from store.schema import COLUMNS, DEFAULT_TABLE, KEY_COLUMNS, VALUE_COLUMNS, as_utc, check_table_name, price_table
from workers.postgres_connection import DatabaseTimeout, DatabaseTimeouts, bounded, engine_for, live_connection
from workers.records import PriceRecord
from workers.validation import check_price

log = logging.getLogger(__name__)

prices = price_table(DEFAULT_TABLE)  # the default table (bench/baseline.py creates it)

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

_tables_ready: set[tuple[str, str]] = set()  # (url, table) created or found by this process
# Creating the table is check-then-create; threads of this process must not race on it.
_tables_lock = threading.Lock()


class PostgresWorker:
    """Upserts price records (``PriceRecord`` or dicts with the same keys) into a price table.

    Params (from the stage's YAML):

    - ``database_url``: any SQLAlchemy URL of PostgreSQL or SQLite; default
      :func:`workers.database.resolve_database_url` (``DATABASE_URL``,
      ``POSTGRES_*``, else the embedded server).
    - ``table``: the table to write (default ``prices``; created if missing): lower-case
      letters, digits and ``_``, at most 32 characters (see :func:`store.schema.check_table_name`).
      Rows are keyed by (symbol, exchange, price_date) within their table, so pipelines that
      write different tables never overwrite each other's rows.
    - ``batch_size``: rows ``process()`` buffers before writing (default 500).
    - ``pool_size``: connection pool size, shared by every worker of this URL (and
      timeouts) in the process (the first worker's value wins); at least the stage's instances.
    - ``retry_seconds``: how long to retry a batch through connection errors and
      hangs (default 60).
    - ``connect_timeout`` (default 10), ``statement_timeout`` (30), ``lock_timeout`` (10),
      ``attempt_timeout`` (60): seconds, see :class:`workers.postgres_connection.DatabaseTimeouts`.
      ``attempt_timeout`` is the client's own bound on one try of a batch: it holds even
      when the server is frozen and answers nothing.

    ``process_batch(items)`` writes the batch in one statement; ``process(item)``
    buffers and ``close()`` writes what is left. Items the database rejects fail
    alone, through :class:`engine.ItemsFailed`; if the database stays unreachable
    or unresponsive for ``retry_seconds``, the whole batch fails with
    :class:`DatabaseUnavailable`. Within one batch, the last item of a key wins.
    Counters: ``rows_written``, ``db_retries``.

    Worst case for one batch against a database that never answers: the first try
    gets ``attempt_timeout``; later tries only what is left of ``retry_seconds``;
    each may first spend up to ``connect_timeout`` connecting. So a batch ends (written
    or failed) within ``max(retry_seconds, attempt_timeout) + connect_timeout`` seconds,
    plus under a second of scheduling.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        table: str = DEFAULT_TABLE,
        batch_size: int = 500,
        pool_size: int = 10,
        retry_seconds: float = 60.0,
        connect_timeout: float = 10.0,
        statement_timeout: float = 30.0,
        lock_timeout: float = 10.0,
        attempt_timeout: float = 60.0,
    ) -> None:
        if batch_size < 1 or pool_size < 1 or retry_seconds < 0:
            raise ValueError("batch_size and pool_size must be >= 1, retry_seconds >= 0")
        self._timeouts = DatabaseTimeouts(connect_timeout, statement_timeout, lock_timeout, attempt_timeout)
        self._table = price_table(check_table_name(table))
        url = normalize_database_url(database_url or resolve_database_url())
        backend = make_url(url).get_backend_name()
        if backend not in _INSERTS:
            raise ValueError(f"PostgresWorker supports PostgreSQL and SQLite, not {mask_url(url)}")
        self._url = url
        # PostgreSQL batches go in through COPY (see _copy_upsert); SQLite takes the statement.
        self._copy = _CopyStatements(self._table.name) if backend == "postgresql" else None
        insert = _INSERTS[backend](self._table)
        # RETURNING lets SQLAlchemy send a batch as one multi-row VALUES statement
        # ("insertmanyvalues"); it leaves ON CONFLICT upserts without RETURNING to the
        # driver's row-at-a-time executemany. (Its caveat, bind parameters inside SET,
        # does not apply: SET only names excluded columns.)
        self._statement = insert.on_conflict_do_update(
            index_elements=list(KEY_COLUMNS),
            set_={c: insert.excluded[c] for c in VALUE_COLUMNS},
        ).returning(self._table.c.id)
        self._engine = engine_for(url, pool_size, self._timeouts)
        self._batch_size = batch_size
        self._retry_seconds = retry_seconds
        self._buffer: list[Any] = []
        self.counters: Counter[str] = Counter()

    @classmethod
    def prepare_stage(cls, params: Mapping[str, Any]) -> None:
        """Before the run: check the params, resolve the database (starting the embedded one),
        reach it within its timeouts, create the table.

        Raises ``ValueError`` for bad params, :class:`DatabaseUnavailable` with one line if
        the database cannot be reached.
        """
        writer = cls(**params)
        url = writer._url
        try:
            with live_connection(writer._engine, writer._timeouts.attempt_timeout) as conn, bounded(
                conn, writer._timeouts.attempt_timeout, f"creating the {writer._table.name} table"
            ):
                _ensure_table(url, writer._table, conn)
        except (DBAPIError, DatabaseTimeout) as exc:
            raise DatabaseUnavailable(f"cannot reach {mask_url(url)}: {first_line(exc)}") from exc
        log.info("writing to %s table %s", mask_url(url), writer._table.name)

    def process_batch(self, items: Sequence[Any]) -> None:
        """Upsert ``items``; raise ``ItemsFailed`` naming only the rejected ones."""
        failures = self._write(items)
        if failures:
            raise ItemsFailed(failures)

    def process(self, item: Any) -> None:
        """Buffer ``item``; write the buffer once it holds ``batch_size`` items.

        A failed write raises ``ItemsFailed`` listing buffered items (earlier ones too).
        """
        self._buffer.append(item)
        if len(self._buffer) >= self._batch_size:
            self._flush()

    def close(self) -> None:
        """Write what ``process()`` buffered; raise ``ItemsFailed`` for what failed."""
        self._flush()

    def _flush(self) -> None:
        items, self._buffer = self._buffer, []
        if not items:
            return
        try:
            failures = self._write(items)
        except Exception as exc:
            # The engine only knows the current item: name every buffered one.
            failures = [(item, exc) for item in items]
        if failures:
            raise ItemsFailed(failures)

    def _write(self, items: Sequence[Any]) -> list[tuple[Any, BaseException]]:
        """Upsert ``items``; return the (item, error) pairs that failed.

        Raises :class:`DatabaseUnavailable` when connection errors outlast ``retry_seconds``.
        """
        failures: list[tuple[Any, BaseException]] = []
        by_key: dict[tuple[Any, ...], tuple[dict[str, Any], Any]] = {}
        for item in items:
            try:
                row = _row(item)
            except Exception as exc:
                failures.append((item, exc))
                continue
            # ON CONFLICT DO UPDATE may not touch a row twice in one statement: last one wins.
            by_key[tuple(row[c] for c in KEY_COLUMNS)] = (row, item)
        pending = list(by_key.values())
        if pending:
            rejected = self._write_with_retry(pending)
            # Counted only now: a retried batch is written again but is still the same rows.
            self.counters["rows_written"] += len(pending) - len(rejected)
            failures += rejected
        return failures

    def _write_with_retry(
        self, pending: list[tuple[dict[str, Any], Any]]
    ) -> list[tuple[Any, BaseException]]:
        deadline = time.monotonic() + self._retry_seconds
        attempt = 0
        while True:
            # The first try may take attempt_timeout; later ones only what is left of the budget
            # (a floor keeps a try that starts at the very end from being cut before it begins).
            limit = self._timeouts.attempt_timeout
            if attempt:
                limit = min(limit, max(deadline - time.monotonic(), _MIN_ATTEMPT))
            try:
                return self._write_once(pending, limit)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                attempt += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DatabaseUnavailable(
                        f"gave up writing {len(pending)} row(s) to {mask_url(self._url)} "
                        f"after {self._retry_seconds:g}s of retries: {first_line(exc)}"
                    ) from exc
                self.counters["db_retries"] += 1
                # Jittered exponential backoff, so many writer threads do not retry in step.
                delay = min(remaining, random.uniform(0.5, 1.0) * min(2.0, 0.05 * 2**attempt))
                log.warning(
                    "database write failed (attempt %d), retrying in %.2fs: %s",
                    attempt, delay, first_line(exc),
                )
                time.sleep(delay)

    def _write_once(
        self, pending: list[tuple[dict[str, Any], Any]], limit: float
    ) -> list[tuple[Any, BaseException]]:
        """One try, cut after ``limit`` seconds: the whole batch in one statement, else row by
        row to isolate bad rows.

        Connection errors and cuts propagate (the caller retries the lot: upserts are idempotent).
        """
        with self._engine.connect() as conn, bounded(conn, limit, f"writing {len(pending)} row(s)"):
            _ensure_table(self._url, self._table, conn)
            try:
                rows = [row for row, _ in pending]
                if self._copy is not None:
                    _copy_upsert(conn, self._copy, rows)
                else:
                    self._upsert(conn, rows)
                return []
            except Exception as exc:
                if _is_transient(exc) or not _is_rejection(exc):
                    raise
                log.info("batch of %d rejected (%s); writing row by row", len(pending), first_line(exc))
            failures: list[tuple[Any, BaseException]] = []
            for row, item in pending:
                try:
                    self._upsert(conn, [row])
                except Exception as exc:
                    if _is_transient(exc) or not _is_rejection(exc):
                        raise
                    failures.append((item, exc))
            return failures

    def _upsert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """``INSERT ... ON CONFLICT (key) DO UPDATE`` of ``rows``, all values bound.

        One statement with a parameter list: SQLAlchemy compiles it once (cached) and
        sends the rows as multi-row VALUES ("insertmanyvalues"), where a statement built
        with ``.values(rows)`` would be compiled anew for every batch.
        """
        with conn.begin():
            conn.execute(self._statement, rows).close()


# The least time a retry is given, however little of retry_seconds is left.
_MIN_ATTEMPT = 0.1

# COPY's text format: backslash escapes for the characters that delimit rows and fields.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class _CopyStatements:
    """The SQL of the COPY path for one table.

    The staging table is temporary (per session, no constraints: the rows are checked when
    they move into the table) and named with a ``-``, which no price table name has, in
    ``pg_temp``: it can neither collide with another table's staging nor hide a real table.
    """

    def __init__(self, table: str) -> None:
        staging = f'pg_temp."staging-{table}"'
        self.key = f"staging-{table}"  # marks, in the connection's info, that the staging table exists
        self.create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS \"staging-{table}\" (symbol text, exchange text, "
            "price_date date, open double precision, high double precision, low double precision, "
            "close double precision, volume double precision, extracted_time timestamptz) ON COMMIT DELETE ROWS"
        )
        self.copy = f"COPY {staging} ({', '.join(COLUMNS)}) FROM STDIN"
        self.upsert = (
            f"INSERT INTO {table} ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM {staging} "
            f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in VALUE_COLUMNS)
        )


def _copy_upsert(conn: Connection, sql: _CopyStatements, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's bulk path: COPY the batch into a staging table, then upsert it in one statement.

    COPY streams the values as data, never as SQL text, and costs about a third of a
    multi-row INSERT (measured in bench/writer.py). Errors come back as SQLAlchemy
    exceptions, as from any other statement, so retries and the row-by-row
    fallback treat them alike.
    """
    info = conn.connection.info
    if not info.get(sql.key):
        with conn.begin():  # its own transaction: a batch that rolls back must not undo it
            conn.exec_driver_sql(sql.create)
        info[sql.key] = True
    with conn.begin():
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.copy_expert(sql.copy, io.StringIO("".join(_copy_line(row) for row in rows)))
        except psycopg2.Error as exc:
            lost = isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
            if lost:
                conn.invalidate()  # never hand a dead connection back to the pool
            raise DBAPIError.instance(sql.copy, None, exc, psycopg2.Error, connection_invalidated=lost) from exc
        finally:
            if not cursor.closed:
                cursor.close()
        conn.exec_driver_sql(sql.upsert)


def _copy_line(row: dict[str, Any]) -> str:
    fields = []
    for column in COLUMNS:
        value = row[column]
        if value is None:
            fields.append("\\N")
        elif isinstance(value, str):
            fields.append(value.translate(_COPY_ESCAPES))
        elif isinstance(value, (dt.date, dt.datetime)):
            fields.append(value.isoformat())
        else:
            fields.append(str(value))  # numbers; anything else is left for PostgreSQL to refuse
    return "\t".join(fields) + "\n"


def _ensure_table(url: str, table: Table, conn: Connection) -> None:
    """Create ``table`` through ``conn`` if missing, once per URL and table per process."""
    if (url, table.name) in _tables_ready:
        return
    with _tables_lock:
        if (url, table.name) in _tables_ready:
            return
        try:
            with conn.begin():
                table.create(conn, checkfirst=True)
        except DBAPIError:
            # Another process may have created it between the check and the CREATE.
            created = inspect(conn).has_table(table.name)
            conn.rollback()  # end the inspection's transaction: the caller begins its own
            if not created:
                raise
        _tables_ready.add((url, table.name))


def _row(item: PriceRecord | Mapping[str, Any]) -> dict[str, Any]:
    """The table row of one item; dates may be ISO strings in dicts."""
    if isinstance(item, PriceRecord):
        # Plain attribute reads: dataclasses.asdict deep-copies and costs more than the insert.
        row = {c: getattr(item, c) for c in COLUMNS}
    elif isinstance(item, Mapping):
        row = {c: item[c] for c in COLUMNS}
        if isinstance(row["price_date"], str):
            row["price_date"] = dt.date.fromisoformat(row["price_date"])
    else:
        raise TypeError(f"expected a PriceRecord or a dict, got {type(item).__name__}")
    row["extracted_time"] = as_utc(row["extracted_time"])
    # Rows may come from any worker, not only PriceWorker: the same rules guard the table.
    check_price(row)
    return row


def _is_transient(exc: BaseException) -> bool:
    """A lost, refused or cut connection: the same batch may succeed later."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, DatabaseTimeout))


def _is_rejection(exc: BaseException) -> bool:
    """The database or driver refused a value (DataError, IntegrityError, a NUL in a string...)."""
    return isinstance(exc, (StatementError, ValueError, TypeError))
