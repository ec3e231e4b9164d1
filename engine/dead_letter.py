"""The dead-letter file: one JSON line per item that did not make it through."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)


class DeadLetterFile:
    """Appends ``{"time", "stage", "kind", "item", "error_type", "message"}`` lines.

    ``kind`` is ``failed`` (the worker raised on the item) or ``lost`` (the item
    was never processed: its stage died, or the run was interrupted).
    The file is created on the first entry, so a clean run leaves none.
    Safe to call from any thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: TextIO | None = None
        self._lock = threading.Lock()  # one writer at a time keeps every line whole

    def write(self, stage: str, kind: str, item: Any, error_type: str, message: str) -> None:
        entry = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "stage": stage,
            "kind": kind,
            "item": item,
            "error_type": error_type,
            "message": message,
        }
        line = json.dumps(entry, default=_jsonable, ensure_ascii=False)
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            # Flushed per line: these are the records a user needs after a crash.
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_dead_letters(path: Path) -> list[dict[str, Any]]:
    """All entries of a dead-letter file (empty if it does not exist)."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)
