"""Writing price rows out as CSV, JSON Lines or Parquet, streamed: memory does not grow with the rows.

Every format holds the same nine fields, in this order, as :class:`store.query.PriceRow`:
``symbol``, ``exchange``, ``price_date`` (a day), ``open``, ``high``, ``low``, ``close``,
``volume`` (numbers, or empty/null when the source had none) and ``extracted_time``
(when it was fetched, UTC).

- CSV: a header line, then one line per row (RFC 4180 quoting, UTF-8); dates in ISO
  form (``2024-05-01``, ``2024-05-01T12:00:00+00:00``); numbers in the shortest form
  that reads back to the same float; a missing value is an empty field.
- JSON Lines: one JSON object per line, with the same text forms and ``null``.
- Parquet (through pyarrow): ``date32`` days, ``float64`` numbers, ``timestamp[us, UTC]``,
  in row groups of :data:`PARQUET_ROW_GROUP` rows.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from store.query import PriceRow

FORMATS = ("csv", "jsonl", "parquet")
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
FIELDS = tuple(f.name for f in dataclasses.fields(PriceRow))
PARQUET_ROW_GROUP = 16_384  # rows per Parquet row group; the writer holds one in memory (65,536 doubled the peak)
_ARROW_BATCH = 8_192  # rows held as Python values before they become Arrow columns


def format_for(path: str | Path) -> str | None:
    """The format a file name's suffix names (``.csv``, ``.jsonl``/``.ndjson``, ``.parquet``/``.pq``), else None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def write_text(rows: Iterable[PriceRow], fmt: str, out: IO[str]) -> int:
    """Write ``rows`` as CSV or JSON Lines to ``out`` (opened with ``newline=""``); return how many."""
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        write_row = writer.writerow
        convert = _csv_values
    elif fmt == "jsonl":
        encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode

        def write_row(values: dict[str, object]) -> None:
            out.write(encode(values) + "\n")

        convert = _json_values
    else:
        raise ValueError(f"write_text writes csv or jsonl, not {fmt!r}")
    count = 0
    for row in rows:
        write_row(convert(row))
        count += 1
    return count


def write_parquet(rows: Iterable[PriceRow], path: str | Path) -> int:
    """Write ``rows`` to a Parquet file at ``path``, a row group at a time; return how many."""
    import pyarrow as pa  # imported on use: the other formats and the rest of the CLI do without it
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("symbol", pa.string()), ("exchange", pa.string()), ("price_date", pa.date32()),
        ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()), ("close", pa.float64()),
        ("volume", pa.float64()), ("extracted_time", pa.timestamp("us", tz="UTC")),
    ])  # fmt: skip
    count = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        # Python values become Arrow arrays every _ARROW_BATCH rows (Python objects cost ten times
        # what Arrow's columns do); the batches are written as one row group once they make one.
        batches: list[pa.RecordBatch] = []
        pending = 0
        columns: list[list[object]] = [[] for _ in FIELDS]
        for row in rows:
            for column, value in zip(columns, _tuple(row)):
                column.append(value)
            count += 1
            if len(columns[0]) >= _ARROW_BATCH:
                batches.append(pa.record_batch(columns, schema=schema))
                pending += len(columns[0])
                columns = [[] for _ in FIELDS]
                if pending >= PARQUET_ROW_GROUP:
                    writer.write_table(pa.Table.from_batches(batches, schema=schema))
                    batches, pending = [], 0
        batches.append(pa.record_batch(columns, schema=schema))
        writer.write_table(pa.Table.from_batches(batches, schema=schema))  # the rest (the schema alone if none)
    return count


def export_to_file(rows: Iterable[PriceRow], fmt: str, path: str | Path) -> int:
    """Write ``rows`` in ``fmt`` to ``path`` whole or not at all; return how many.

    The rows go to ``<path>.partial``, renamed to ``path`` once complete: a reader
    never sees half a file, and an export that fails (or is interrupted) leaves
    ``path`` as it was and removes the partial file.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        if fmt == "parquet":
            count = write_parquet(rows, partial)
        else:
            with open(partial, "w", encoding="utf-8", newline="") as out:
                count = write_text(rows, fmt, out)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def _tuple(row: PriceRow) -> tuple[object, ...]:
    return (row.symbol, row.exchange, row.price_date, row.open, row.high, row.low, row.close, row.volume,
            row.extracted_time)


def _csv_values(row: PriceRow) -> list[object]:
    # csv writes None as an empty field and a float as repr(), which reads back exactly.
    values = list(_tuple(row))
    values[2] = row.price_date.isoformat()
    values[8] = row.extracted_time.isoformat()
    return values


def _json_values(row: PriceRow) -> dict[str, object]:
    values = dict(zip(FIELDS, _tuple(row)))
    values["price_date"] = row.price_date.isoformat()
    values["extracted_time"] = row.extracted_time.isoformat()
    return values
