"""``python main.py db`` (and ``--show-db``): where the pipeline's prices are, how to open them, what they hold."""

from __future__ import annotations

import argparse
import shlex
import sys

from engine import PipelineConfigError
from engine.report import EXIT_CONFIG, EXIT_OK
from store.query import StoreSummary, summary
from store.target import PriceStore, default_store
from workers.database import DatabaseUnavailable, describe_database

TOP = 10  # symbols whose latest price is shown
_LISTED = 20  # names listed in full before the rest are counted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``db``."""
    parser.description = (
        "Say where the pipeline's writer stores prices (its database_url and table params, else "
        "DATABASE_URL, POSTGRES_*, or the embedded PostgreSQL), how to open that database, and what it "
        "holds: rows, symbols, exchanges, dates and the latest price of the most traded symbols. "
        "Exit 0, or 2 with one line when the pipeline or the database cannot be read."
    )
    parser.add_argument("--pipeline", metavar="PATH",
                        help="the pipeline whose store to describe (default: $PIPELINE_LOCATION)")
    parser.add_argument("--top", type=int, default=TOP, metavar="N",
                        help=f"show the latest price of the N most traded symbols (default {TOP})")
    parser.add_argument("--log-level", default="WARNING", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log detail on stderr (default WARNING: the output is the report)")


def run(args: argparse.Namespace) -> int:
    """Print the summary; one line on stderr and exit 2 if the pipeline or its database cannot be read."""
    return show(args.pipeline, args.top)


def show(pipeline: str | None, top: int = TOP) -> int:
    """What ``db`` and ``--show-db`` print, for ``pipeline`` (default ``$PIPELINE_LOCATION``)."""
    try:
        store = default_store(pipeline)
        option = f" --pipeline {shlex.quote(pipeline)}" if pipeline else ""
        lines = describe_database(store.url, psql_command=f"python main.py --psql{option}")
        lines += describe_summary(store, summary(store, max(0, top)))
    except (PipelineConfigError, DatabaseUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print("\n".join(lines))
    return EXIT_OK


def describe_summary(store: PriceStore, found: StoreSummary) -> list[str]:
    """Lines for what ``store`` holds."""
    if not found.rows:
        return [f"table {store.table}: no rows yet"]
    lines = [
        f"table {store.table}: {found.rows:,} row(s), from {found.first_date} to {found.last_date}",
        f"symbols ({len(found.symbols):,}): {_names(found.symbols)}",
        f"exchanges ({len(found.exchanges):,}): {_names(found.exchanges)}",
    ]
    if found.latest:
        lines.append(f"latest price of the {len(found.latest)} most traded symbol(s) (close x volume):")
        width = max(len(row.symbol) for row in found.latest)
        exchange_width = max(len(row.exchange) for row in found.latest)
        for row in found.latest:
            lines.append(f"  {row.symbol:<{width}}  {row.exchange:<{exchange_width}}  {row.price_date}  "
                         f"close {_number(row.close)}  volume {_number(row.volume)}")
    return lines


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown}, and {len(names) - _LISTED:,} more"


def _number(value: float | None) -> str:
    """Cents for large numbers (never an exponent: 1,439,006,900.00), 8 significant digits for small ones."""
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) >= 1000 else f"{value:.8g}"
