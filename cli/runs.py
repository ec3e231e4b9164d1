"""``python main.py runs``: the past runs under the run directory, newest first.

One line per run: when it started, the pipeline, the outcome and exit code, the items
in and out and the failures, how long it took, and its dead-letter file (if any items
failed). ``--json`` prints one JSON object per line instead, for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.history import RunEntry, list_runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default="runs", metavar="DIR", help="where the runs are (default: runs/)")
    parser.add_argument("-n", dest="limit", type=runs_count, default=20, metavar="N",
                        help="show the newest N runs (default 20)")
    parser.add_argument("--all", dest="limit", action="store_const", const=None, help="show every run")
    parser.add_argument("--json", action="store_true", help="one JSON object per run, per line")


def runs_count(text: str) -> int:
    """An argparse type: a number of runs, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of runs of 1 or more")
    return value


def run(args: argparse.Namespace) -> int:
    """Print the runs; exit 0 (an empty or missing run directory says so on stderr)."""
    everything = list_runs(Path(args.run_dir))
    runs = everything if args.limit is None else everything[: args.limit]
    if args.json:
        for entry in runs:
            print(json.dumps(entry.to_dict()))
        return 0
    if not runs:
        print(f"no runs in {args.run_dir}", file=sys.stderr)
        return 0
    for line in _table(runs):
        print(line)
    if len(runs) < len(everything):
        print(f"the newest {len(runs)} of {len(everything)} runs; --all shows every one", file=sys.stderr)
    return 0


_COLUMNS = ("started", "pipeline", "outcome", "in", "out", "failed", "took", "dead letters")
_RIGHT = {"in", "out", "failed", "took"}


def _table(runs: list[RunEntry]) -> list[str]:
    """Aligned plain-text lines, header first; nothing is cut (paths are meant to be copied)."""
    rows = [list(_COLUMNS)] + [_row(entry) for entry in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return ["  ".join(cell.rjust(w) if name in _RIGHT else cell.ljust(w)
                      for name, cell, w in zip(_COLUMNS, row, widths)).rstrip() for row in rows]


def _row(entry: RunEntry) -> list[str]:
    code = "" if entry.exit_code is None else f" ({entry.exit_code})"
    return [
        entry.started.astimezone().strftime("%Y-%m-%d %H:%M:%S") if entry.started else "?",
        entry.pipeline,
        entry.outcome + code,
        f"{entry.items_in:,}",
        f"{entry.items_out:,}",
        f"{entry.failed:,}",
        f"{entry.duration:.1f}s" if entry.duration is not None else "",
        f"{entry.dead_letter_path} ({entry.dead_letters:,})" if entry.dead_letter_path and entry.dead_letters else "",
    ]
