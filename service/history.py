"""The runs a pipeline left under its run directory (``runs/``), read from each run's ``report.json``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"
DEAD_LETTER_NAME = "failed_items.jsonl"
NOT_STARTED = "not started"  # the outcome of a scheduled run that could not start (written by the service)
UNFINISHED = "unfinished"  # a run directory without a readable report.json: running now, or killed

# The names the executor gives run directories: local start time to the microsecond, the
# pipeline's name made path-safe, and a counter when two runs start in the same microsecond.
_RUN_NAME = re.compile(r"^(\d{8}-\d{6}\.\d{6})-([A-Za-z0-9_.-]+?)(?:-\d+)?$")


@dataclass(frozen=True)
class RunEntry:
    """One past (or current) run, as its directory tells it.

    ``outcome`` is report.json's ("done", "died", "failures", "interrupted", "unrecorded"),
    ``"not started"`` for a scheduled run that could not start, or ``"unfinished"`` when the
    directory has no readable report.json (the run is still going, or its process was killed).
    ``items_in`` counts the items the sources took in (their input values), ``items_out`` those
    the sinks finished without failing (stored, for the shipped writer), ``failed`` the items that
    failed or were lost, all stages together (what ``max_failures`` limits). Counts are 0 when unknown.
    """

    name: str
    path: Path
    pipeline: str
    started: dt.datetime | None
    duration: float | None
    outcome: str
    exit_code: int | None
    items_in: int
    items_out: int
    failed: int
    dead_letters: int
    dead_letter_path: Path | None
    reason: str | None = None  # one sentence when the run did not simply succeed

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (paths and times as strings)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "pipeline": self.pipeline,
            "started": self.started.isoformat() if self.started else None,
            "duration": self.duration,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "items_in": self.items_in,
            "items_out": self.items_out,
            "failed": self.failed,
            "dead_letters": self.dead_letters,
            "dead_letter_path": str(self.dead_letter_path) if self.dead_letter_path else None,
            "reason": self.reason,
        }


def is_run_name(name: str) -> bool:
    """Whether ``name`` is one the executor gives a run directory (``20260131-120000.123456-pipeline``)."""
    return _RUN_NAME.match(name) is not None


def list_runs(run_dir: Path) -> list[RunEntry]:
    """Every run directory under ``run_dir``, newest first; ``[]`` if there is none. Never raises:
    a directory whose report.json is missing or broken is listed as ``"unfinished"``."""
    return [read_run(path) for path in reversed(_run_dirs(Path(run_dir)))]


def read_run(path: Path) -> RunEntry:
    """The :class:`RunEntry` of one run directory; never raises."""
    path = Path(path)
    match = _RUN_NAME.match(path.name)
    report = _read_report(path / REPORT_NAME)
    items = report.get("items") if isinstance(report.get("items"), dict) else {}
    pipeline = report.get("pipeline") if isinstance(report.get("pipeline"), dict) else {}
    started = _parse_time(report.get("started_at")) or (_name_time(match.group(1)) if match else None)
    dead_letter_path = _dead_letter_path(path, report)
    return RunEntry(
        name=path.name,
        path=path,
        pipeline=str(pipeline.get("name") or (match.group(2) if match else path.name)),
        started=started,
        duration=_number(report.get("seconds"), float),
        outcome=str(report.get("outcome") or UNFINISHED),
        exit_code=_number(report.get("exit_code"), int),
        items_in=_number(items.get("in"), int) or 0,
        items_out=_first_number(report.get("delivered"), items.get("out")),
        failed=_number(report.get("failures"), int) or 0,
        dead_letters=_number(report.get("dead_letters"), int) or 0,
        dead_letter_path=dead_letter_path,
        reason=report.get("reason") if isinstance(report.get("reason"), str) else None,
    )


def prune_runs(run_dir: Path, keep: int, *, protect: Collection[Path] = ()) -> list[Path]:
    """Remove the oldest run directories under ``run_dir`` beyond the newest ``keep``; return those removed.

    Only directories named as the executor names them are counted or removed (never a symlink,
    a file, or anything else a person put there), and never one in ``protect`` (the current
    run). A directory that cannot be removed is logged and skipped.
    """
    if keep < 0:
        raise ValueError("keep must be 0 or more")
    protected = {Path(p).resolve() for p in protect}
    runs = _run_dirs(Path(run_dir))
    removed = []
    for path in runs[: max(0, len(runs) - keep)]:
        if path.resolve() in protected:
            continue
        try:
            shutil.rmtree(path)
        except OSError as exc:
            log.warning("cannot remove the old run directory %s: %s", path, exc.strerror or exc)
            continue
        removed.append(path)
    return removed


def _run_dirs(run_dir: Path) -> list[Path]:
    """The run directories under ``run_dir``, oldest first (their names start with the time)."""
    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return []
    return sorted(p for p in entries if is_run_name(p.name) and p.is_dir() and not p.is_symlink())


def _read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dead_letter_path(run_path: Path, report: dict[str, Any]) -> Path | None:
    """The run's dead-letter file, if it exists (the report's, else the default one in the run directory)."""
    named = report.get("dead_letter_path")
    candidate = Path(named) if isinstance(named, str) and named else run_path / DEAD_LETTER_NAME
    try:
        return candidate if candidate.is_file() else None
    except OSError:
        return None


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _name_time(stamp: str) -> dt.datetime | None:
    """The start time in a run directory's name (local time), as an aware datetime."""
    try:
        return dt.datetime.strptime(stamp, "%Y%m%d-%H%M%S.%f").astimezone()
    except ValueError:
        return None


def _first_number(*values: Any) -> int:
    """The first of ``values`` that is a number, as an int; 0 if none is."""
    return next((int(v) for v in values if _number(v, int) is not None), 0)


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return kind(value)
