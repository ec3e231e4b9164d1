"""Read-only queries of a price table, on PostgreSQL and SQLite.

Every statement runs under a deadline: the server cancels one that runs longer
than :data:`STATEMENT_TIMEOUT` (PostgreSQL), and the client cuts a connection on
which one call (a query, or one fetch of a streamed export) got no answer for
:data:`CALL_TIMEOUT`, so a frozen server costs a reader one error, never a hang.
Errors come out as :class:`workers.database.DatabaseUnavailable` with one line,
password masked. A table that does not exist yet reads as empty.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, and_, func, inspect, select
from sqlalchemy.engine import Connection, CursorResult, Engine, Row
from sqlalchemy.exc import SQLAlchemyError

from store.schema import as_utc, price_table
from store.target import PriceStore
from workers.database import DatabaseUnavailable, first_line, mask_url
from workers.postgres_connection import DatabaseTimeout, DatabaseTimeouts, bounded, engine_for, live_connection
from workers.records import PriceRecord

CONNECT_TIMEOUT = 5.0  # seconds to open a connection
STATEMENT_TIMEOUT = 60.0  # seconds one statement may run on the server
CALL_TIMEOUT = 75.0  # seconds the client waits for any one answer before cutting the connection
STREAM_BATCH = 10_000  # rows fetched at a time by iter_prices (what a streamed export holds in memory)

_POOL_SIZE = 4  # readers are few: a CLI command, or the dashboard's requests


PriceRow = PriceRecord
"""A stored price, as read back: the record the pipeline's stages pass to the writer
(:class:`workers.records.PriceRecord`); ``extracted_time`` is timezone-aware UTC."""


@dataclass(frozen=True)
class StoreSummary:
    """What a price table holds; ``latest`` is the newest row of each of the top symbols."""

    rows: int
    symbols: list[str]
    exchanges: list[str]
    first_date: dt.date | None
    last_date: dt.date | None
    latest: list[PriceRow]


def summary(store: PriceStore, top: int = 10) -> StoreSummary:
    """Row count, symbols and exchanges (sorted), date range, and the latest price of the ``top`` symbols.

    The top symbols are those with the most traded value (close x volume) on their
    newest day; each comes with its newest row on the exchange that traded the most.
    """
    table = price_table(store.table)
    with _connection(store) as conn:
        if not _exists(conn, store):
            return StoreSummary(0, [], [], None, None, [])
        rows, first, last = _call(conn, select(func.count(), func.min(table.c.price_date),
                                               func.max(table.c.price_date))).one()
        symbols = _call(conn, select(table.c.symbol).distinct().order_by(table.c.symbol)).scalars().all()
        exchanges = _call(conn, select(table.c.exchange).distinct().order_by(table.c.exchange)).scalars().all()
        newest = [_price_row(r) for r in _call(conn, _newest_per_pair(table))]
    return StoreSummary(rows, list(symbols), list(exchanges), _date(first), _date(last), _top(newest, top))


def latest_prices(store: PriceStore, search: str = "", limit: int = 500) -> list[PriceRow]:
    """The newest row of each (symbol, exchange), sorted by symbol then exchange, at most ``limit``.

    ``search`` keeps the pairs whose symbol or exchange contains it, ignoring case
    (``%`` and ``_`` match themselves).
    """
    table = price_table(store.table)
    query = _newest_per_pair(table)
    if search:
        needle = search.lower()
        query = query.where(
            func.lower(table.c.symbol).contains(needle, autoescape=True)
            | func.lower(table.c.exchange).contains(needle, autoescape=True)
        )
    query = query.order_by(table.c.symbol, table.c.exchange).limit(max(0, limit))
    with _connection(store) as conn:
        if not _exists(conn, store):
            return []
        return [_price_row(r) for r in _call(conn, query)]


def close_series(store: PriceStore, symbol: str, exchanges: Sequence[str] = ()) -> dict[str, list[tuple[dt.date, float]]]:
    """``symbol``'s close price over time: exchange -> [(date, close)] in ascending date order.

    ``exchanges`` limits it to those (default: every exchange that has the symbol);
    days without a close are left out, and so is an exchange with none.
    """
    table = price_table(store.table)
    query = (
        select(table.c.exchange, table.c.price_date, table.c.close)
        .where(table.c.symbol == symbol, table.c.close.is_not(None))
        .order_by(table.c.exchange, table.c.price_date)
    )
    if exchanges:
        query = query.where(table.c.exchange.in_(list(exchanges)))
    series: dict[str, list[tuple[dt.date, float]]] = {}
    with _connection(store) as conn:
        if not _exists(conn, store):
            return series
        for exchange, day, close in _call(conn, query):
            series.setdefault(exchange, []).append((_date(day), close))
    return series


def iter_prices(
    store: PriceStore,
    *,
    symbol: str | Sequence[str] | None = None,
    exchange: str | Sequence[str] | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> Iterator[PriceRow]:
    """Every stored row that passes the filters, ordered by (symbol, exchange, price_date), streamed.

    ``symbol`` and ``exchange`` are one name or several (any of them matches);
    ``since`` and ``until`` are inclusive dates. Rows come from a server-side cursor
    :data:`STREAM_BATCH` at a time, so memory does not grow with the table. The
    connection is held until the iterator is exhausted or closed.
    """
    table = price_table(store.table)
    query = select(*(table.c[c] for c in _ROW_COLUMNS)).order_by(
        table.c.symbol, table.c.exchange, table.c.price_date
    )
    conditions = []
    if symbol is not None:
        conditions.append(table.c.symbol.in_([symbol] if isinstance(symbol, str) else list(symbol)))
    if exchange is not None:
        conditions.append(table.c.exchange.in_([exchange] if isinstance(exchange, str) else list(exchange)))
    if since is not None:
        conditions.append(table.c.price_date >= since)
    if until is not None:
        conditions.append(table.c.price_date <= until)
    if conditions:
        query = query.where(and_(*conditions))
    with _connection(store) as conn:
        if not _exists(conn, store):
            return
        streaming = conn.execution_options(yield_per=STREAM_BATCH)  # a server-side cursor, fetched a batch at a time
        result = _call(streaming, query)
        batches = result.partitions(STREAM_BATCH)
        while True:
            with bounded(conn, CALL_TIMEOUT, f"reading {store.table}"):
                batch = next(batches, None)
            if batch is None:
                return
            for row in batch:
                yield _price_row(row)


_ROW_COLUMNS = ("symbol", "exchange", "price_date", "open", "high", "low", "close", "volume", "extracted_time")


def _engine(store: PriceStore) -> Engine:
    # engine_for keeps one engine (and pool) per URL and timeouts for the process: a deliberate cache.
    timeouts = DatabaseTimeouts(CONNECT_TIMEOUT, STATEMENT_TIMEOUT, 0, CALL_TIMEOUT)
    return engine_for(store.url, _POOL_SIZE, timeouts)


@contextmanager
def _connection(store: PriceStore) -> Iterator[Connection]:
    """A connection to ``store``'s database; any database error leaving the block becomes DatabaseUnavailable."""
    try:
        conn = live_connection(_engine(store), CALL_TIMEOUT)
    except (SQLAlchemyError, DatabaseTimeout) as exc:
        raise DatabaseUnavailable(f"cannot reach {mask_url(store.url)}: {first_line(exc)}") from exc
    try:
        with conn:
            yield conn
    except (SQLAlchemyError, DatabaseTimeout) as exc:
        raise DatabaseUnavailable(f"cannot read table {store.table} of {mask_url(store.url)}: {first_line(exc)}") from exc


def _call(conn: Connection, query: Select[Any]) -> CursorResult[Any]:
    """Execute ``query`` under the client-side bound; the result's first rows have arrived when it returns."""
    with bounded(conn, CALL_TIMEOUT, "a query"):
        return conn.execute(query)


def _exists(conn: Connection, store: PriceStore) -> bool:
    with bounded(conn, CALL_TIMEOUT, "looking for the table"):
        found = inspect(conn).has_table(store.table)
    return found


def _newest_per_pair(table: Table) -> Select[Any]:
    """The newest row of each (symbol, exchange): the key is unique, so the newest date picks one row."""
    newest = (
        select(table.c.symbol, table.c.exchange, func.max(table.c.price_date).label("day"))
        .group_by(table.c.symbol, table.c.exchange)
        .subquery()
    )
    return select(*(table.c[c] for c in _ROW_COLUMNS)).join(
        newest,
        and_(
            table.c.symbol == newest.c.symbol,
            table.c.exchange == newest.c.exchange,
            table.c.price_date == newest.c.day,
        ),
    )


def _top(newest: list[PriceRow], top: int) -> list[PriceRow]:
    """One row per symbol (its newest day, the exchange with the most traded value), the ``top`` by traded value."""
    best: dict[str, PriceRow] = {}
    for row in newest:
        held = best.get(row.symbol)
        if held is None or (row.price_date, _traded(row)) > (held.price_date, _traded(held)):
            best[row.symbol] = row
    ranked = sorted(best.values(), key=lambda row: (-_traded(row), row.symbol))
    return ranked[: max(0, top)]


def _traded(row: PriceRow) -> float:
    return (row.close or 0.0) * (row.volume or 0.0)


def _price_row(row: Row[Any]) -> PriceRow:
    """A PriceRow from a row of the _ROW_COLUMNS, by position (the export's hot path)."""
    symbol, exchange, day, open_, high, low, close, volume, extracted = row
    return PriceRow(symbol, exchange, _date(day), open_, high, low, close, volume, as_utc(extracted))


def _date(value: dt.date | dt.datetime | str | None) -> dt.date | None:
    """A date (SQLite's min()/max() return text; a datetime column read as a date keeps its day)."""
    if value is None or type(value) is dt.date:
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])

