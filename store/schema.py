"""The shape of a price table, shared by the writer (workers.postgres_worker) and the readers (store.query).

A pipeline's writer may target any table named by :func:`check_table_name`; the
names of its constraint and of the writer's staging table are derived from it, so
two tables in one database never share them.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

DEFAULT_TABLE = "prices"
KEY_COLUMNS = ("symbol", "exchange", "price_date")
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "extracted_time")
COLUMNS = KEY_COLUMNS + VALUE_COLUMNS

# PostgreSQL cuts identifiers at 63 bytes; the longest derived name adds 31 characters
# ("_symbol_exchange_price_date_key"), so a longer table name could make two constraints collide.
MAX_TABLE_NAME = 32
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def check_table_name(name: object) -> str:
    """``name`` if it can name a price table, else ``ValueError`` saying what is allowed.

    Lower-case letters, digits and ``_``, not starting with a digit, at most
    :data:`MAX_TABLE_NAME` characters: a plain SQL identifier that means the same
    table quoted or not, in PostgreSQL and SQLite alike.
    """
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name) or len(name) > MAX_TABLE_NAME:
        raise ValueError(
            f"table must be a name of lower-case letters, digits and _ (not starting with a digit, "
            f"at most {MAX_TABLE_NAME} characters), such as prices_eur, not {name!r}"
        )
    if name.startswith(("pg_", "sqlite_")):
        raise ValueError(f"table {name!r}: names starting with pg_ or sqlite_ are reserved by the database")
    return name


@lru_cache(maxsize=None)  # deliberate cache: one Table per name, shared by every writer and reader
def price_table(name: str = DEFAULT_TABLE) -> Table:
    """The SQLAlchemy table ``name`` (checked by :func:`check_table_name`), keyed by (symbol, exchange, price_date)."""
    check_table_name(name)
    return Table(
        name,
        MetaData(),
        # SQLite gives auto-increment ids only to an INTEGER PRIMARY KEY.
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("symbol", Text, nullable=False),
        Column("exchange", Text, nullable=False),
        Column("price_date", Date, nullable=False),
        Column("open", Double),
        Column("high", Double),
        Column("low", Double),
        Column("close", Double),
        Column("volume", Double),
        Column("extracted_time", DateTime(timezone=True), nullable=False),
        UniqueConstraint(*KEY_COLUMNS, name=f"{name}_symbol_exchange_price_date_key"),
    )


def as_utc(value: dt.datetime | str) -> dt.datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO string; a naive one is taken to be UTC already
    (SQLite keeps no offset, and the writer stores UTC). ``TypeError`` for anything else."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"extracted_time must be a datetime or an ISO string, got {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
