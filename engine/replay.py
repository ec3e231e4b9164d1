"""Replay: read a dead-letter file back as items for the stages they were bound for.

Each entry names the ``stage`` that failed, lost or did not start its ``item``;
replaying feeds the item into that stage's input again (see the ``replay``
argument of :class:`engine.PipelineExecutor`). Items come back as JSON: a
dataclass item is a dict, a date an ISO string.

A worker class may refuse items it cannot take again with an optional
classmethod ``check_replay(item)`` that raises ``ValueError`` saying why
(WikiWorker's failed table rows, say): those are skipped and counted, not fed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import PipelineConfig
from engine.errors import RunStartError
from engine.text import one_line

REPLAYED_KINDS = ("failed", "lost", "interrupted")
_KEYS = ("stage", "kind", "item")


class ReplayError(RunStartError):
    """The replay file cannot be read or does not fit the pipeline; one line."""


@dataclass
class Replay:
    """What a dead-letter file gives back: items per stage, and what was skipped and why."""

    path: Path
    items: dict[str, list[Any]] = field(default_factory=dict)  # stage name -> items, in file order
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (stage, reason) -> items

    @property
    def count(self) -> int:
        """Items to feed in."""
        return sum(len(items) for items in self.items.values())

    def describe(self) -> list[str]:
        """Short lines for the log: what is replayed where, and what is skipped."""
        lines = [f"replaying {self.count} item(s) from {self.path}: "
                 + ", ".join(f"{len(items)} into {stage}" for stage, items in self.items.items())]
        for (stage, reason), count in self.skipped.items():
            lines.append(f"skipped {count} {stage} item(s) that cannot be replayed: {reason}")
        return lines


def read_replay(path: str | Path, config: PipelineConfig) -> Replay:
    """Read the dead-letter file at ``path`` for a replay of ``config``.

    Raises :class:`ReplayError` (one line naming the file and line) if the file
    cannot be read, a line is not a JSON object with ``stage``, ``kind`` and
    ``item``, a kind is not one of ``failed``, ``lost``, ``interrupted``, a
    stage is not in ``config``, or nothing is left to replay.
    """
    replay = Replay(Path(path))
    stages = {stage.name: stage for stage in config.stages}
    try:
        with replay.path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if line.strip():
                    _add(replay, _entry(line, f"{path}:{number}", config, stages), stages)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ReplayError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(str(exc))
        raise ReplayError(f"cannot read the replay file {path}: {reason}") from None
    if not replay.count:
        skipped = sum(replay.skipped.values())
        raise ReplayError(
            f"nothing to replay in {path}" + (f": all {skipped} item(s) were skipped" if skipped else ": no entries")
        )
    return replay


def _entry(line: str, where: str, config: PipelineConfig, stages: dict[str, Any]) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, or a number too long to convert
        raise ReplayError(f"{where}: not a dead-letter entry (not JSON: {one_line(str(exc))})") from None
    if not isinstance(entry, dict):
        raise ReplayError(f"{where}: not a dead-letter entry (a JSON {type(entry).__name__}, not an object)")
    missing = [key for key in _KEYS if key not in entry]
    if missing:
        raise ReplayError(f"{where}: not a dead-letter entry (no {', '.join(missing)})")
    if entry["kind"] not in REPLAYED_KINDS:
        raise ReplayError(
            f"{where}: unknown kind {one_line(repr(entry['kind']))[:100]}; expected one of {', '.join(REPLAYED_KINDS)}"
        )
    if not isinstance(entry["stage"], str) or entry["stage"] not in stages:
        raise ReplayError(
            f"{where}: stage {one_line(repr(entry['stage']))[:100]} is not in pipeline {config.name} "
            f"(its stages: {', '.join(stages)}); replay with the pipeline that wrote the file"
        )
    return entry


def _add(replay: Replay, entry: dict[str, Any], stages: dict[str, Any]) -> None:
    name, item = entry["stage"], entry["item"]
    if item is None:  # written for a failure that belongs to no item (a worker's close() failed)
        replay.skipped[(name, "no item was recorded")] += 1
        return
    check = getattr(stages[name].worker_class, "check_replay", None)
    if check is not None:
        try:
            check(item)
        except (ValueError, TypeError) as exc:
            replay.skipped[(name, one_line(str(exc))[:200] or "refused by the worker")] += 1
            return
    replay.items.setdefault(name, []).append(item)
