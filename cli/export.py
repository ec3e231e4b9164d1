"""``python main.py export``: the stored prices as CSV, JSON Lines or Parquet, streamed from the database."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
import logging
import os
import sys
import time
from pathlib import Path

from engine import PipelineConfigError
from engine.report import EXIT_CONFIG, EXIT_OK, EXIT_STAGE_DIED
from store.export import FORMATS, export_to_file, format_for, write_text
from store.query import PriceRow, iter_prices
from store.target import default_store
from workers.database import DatabaseUnavailable

log = logging.getLogger(__name__)

DESCRIPTION = """\
Write the prices the pipeline stored (its writer stage's database and table) to FILE,
or to standard output for csv and jsonl. Rows are read and written a batch at a time,
in (symbol, exchange, price_date) order; a file is written whole or not at all
(through FILE.partial, renamed at the end).

exit codes: 0 written; 1 the export failed part way (the database went away, the disk
filled) and FILE is left as it was; 2 bad options, no pipeline, or the database cannot
be reached; 130 interrupted."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``export``."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="file to write (default: standard output; - is standard output too)")
    parser.add_argument("--format", choices=FORMATS,
                        help="csv, jsonl or parquet (default: from FILE's suffix: .csv, .jsonl/.ndjson, "
                             ".parquet/.pq; csv on standard output)")
    parser.add_argument("--symbol", action="append", metavar="S",
                        help="only this symbol (repeat for several)")
    parser.add_argument("--exchange", action="append", metavar="E",
                        help="only this exchange (repeat for several)")
    parser.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="only prices of this day or later")
    parser.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="only prices of this day or earlier")
    parser.add_argument("--pipeline", metavar="PATH",
                        help="the pipeline whose stored prices to export (default: $PIPELINE_LOCATION)")
    parser.add_argument("--log-level", default="WARNING", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log detail on stderr (default WARNING: the output is the report)")


def run(args: argparse.Namespace) -> int:
    """Export; one line on stderr for anything wrong. Exit codes as in :data:`DESCRIPTION`."""
    path = None if args.output in (None, "-") else Path(args.output)
    problem = _problem(args, path)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    fmt = args.format or (format_for(path) if path else "csv")
    try:
        store = default_store(args.pipeline)
        rows = iter_prices(store, symbol=args.symbol, exchange=args.exchange, since=args.since, until=args.until)
        # The first row is read before any output is made: a database that cannot be read
        # is a start-up error, and leaves no file behind.
        first = list(itertools.islice(rows, 1))
    except (PipelineConfigError, DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    started = time.monotonic()
    try:
        if path is None:
            count = _to_stdout(itertools.chain(first, rows), fmt)
            if count is None:
                return EXIT_STAGE_DIED
        else:
            count = export_to_file(itertools.chain(first, rows), fmt, path)
    except DatabaseUnavailable as exc:
        left = "standard output is incomplete" if path is None else f"{path} left as it was"
        print(f"error: export stopped ({left}): {exc}", file=sys.stderr)
        return EXIT_STAGE_DIED
    except OSError as exc:
        print(f"error: cannot write {path or 'standard output'}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_STAGE_DIED
    seconds = time.monotonic() - started
    where = str(path) if path else "standard output"
    print(f"exported {count:,} row(s) of {store} as {fmt} to {where} in {seconds:.1f}s", file=sys.stderr)
    return EXIT_OK


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day in the form YYYY-MM-DD: {text!r}") from None


def _problem(args: argparse.Namespace, path: Path | None) -> str | None:
    """What is wrong with the options, before anything is read or written."""
    if args.since and args.until and args.since > args.until:
        return f"--since {args.since} is after --until {args.until}: no day is in that range"
    if path is None:
        if args.format == "parquet":
            return "parquet needs a file: give -o FILE.parquet"
        return None
    guessed = format_for(path)
    if args.format is None and guessed is None:
        return (f"cannot tell the format from {path.name!r}: name it .csv, .jsonl or .parquet, "
                "or give --format csv|jsonl|parquet")
    if args.format and guessed and args.format != guessed:
        return f"{path.name!r} names {guessed} but --format is {args.format}: change one of them"
    if path.is_dir():
        return f"{path} is a directory: give a file name"
    parent = path.parent
    if not parent.is_dir():
        return f"cannot write {path}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK):
        return f"cannot write {path}: directory {parent} is not writable"
    return None


def _to_stdout(rows: itertools.chain[PriceRow], fmt: str) -> int | None:
    """Write to standard output as UTF-8; None if the reader went away (``| head``) before the end."""
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", write_through=False)
    try:
        count = write_text(rows, fmt, out)
        out.flush()
        return count
    except BrokenPipeError:
        # Nothing more can reach the reader; point stdout at /dev/null so the exit flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        print("export stopped: standard output was closed", file=sys.stderr)
        return None
    finally:
        out.detach()  # sys.stdout keeps its buffer
