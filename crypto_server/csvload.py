"""Load Cryptowatch daily CSV exports: one ``<exchange>_<symbol>.csv`` per pair."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from .data import DataError, Dataset, _pack, _Series, parse_day
from .synthetic import real_assets

_COLUMNS = ("CloseTime", "OpenPrice", "HighPrice", "LowPrice", "ClosePrice", "Volume", "VolumeUSD", "DateTime")
_VALUES = ("OpenPrice", "HighPrice", "LowPrice", "ClosePrice", "Volume")
_NAME = re.compile(r"([a-z0-9][a-z0-9.-]*)_([a-z0-9][a-z0-9.-]*)")

_Row = tuple[float, float, float, float, float]


def load_csv_dir(data_dir: Path) -> Dataset:
    """A Dataset from every ``*.csv`` in ``data_dir``; other files (README, LICENSE) are ignored."""
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory")
    files = sorted(data_dir.glob("*.csv"))
    if not files:
        raise DataError(f"{data_dir}: no <exchange>_<symbol>.csv files")
    series: dict[tuple[str, str], _Series] = {}
    for path in files:
        match = _NAME.fullmatch(path.stem)
        if match is None:
            raise DataError(f"{path}: file name is not <exchange>_<symbol>.csv in lower case")
        series[(match[1], match[2])] = _pack(_read_file(path))
    if not any(len(s) for s in series.values()):
        raise DataError(f"{data_dir}: the CSV files hold no price rows")
    known = real_assets()  # pages show names and founding years for symbols we know
    symbols = {symbol for _, symbol in series}
    return Dataset(
        series,
        exchanges={exchange for exchange, _ in series},
        symbols=symbols,
        assets={s: known[s] for s in symbols if s in known},
        source=f"CSV files in {data_dir}",
    )


def _read_file(path: Path) -> dict[int, _Row]:
    """{day ordinal: (open, high, low, close, volume)}; DataError naming file and line on bad input."""
    rows: dict[int, _Row] = {}
    try:
        # utf-8-sig: exports saved by spreadsheet programs start with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}:1: empty file, expected the header {','.join(_COLUMNS)}")
            header = [h.strip() for h in header]
            missing = [c for c in _COLUMNS if c not in header]
            if missing:
                raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
            index = {c: header.index(c) for c in _COLUMNS}
            for record in reader:
                where = f"{path}:{reader.line_num}"
                if not record or record == [""]:
                    continue  # blank line, typically at the end
                if len(record) != len(header):
                    raise DataError(f"{where}: expected {len(header)} fields, found {len(record)}")
                try:
                    day = parse_day(record[index["DateTime"]].strip())
                except ValueError as exc:
                    raise DataError(f"{where}: bad DateTime: {exc}") from None
                values = tuple(_number(record[index[c]], c, where) for c in _VALUES)
                ordinal = day.toordinal()
                if ordinal in rows:
                    raise DataError(f"{where}: second row for {day}")
                rows[ordinal] = values  # type: ignore[assignment]
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    return rows


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{where}: {column} must be a finite number >= 0, got {text!r}")
    return value
