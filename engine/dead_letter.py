"""The dead-letter file: one JSON line per item that did not make it through."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import json
import logging
import os
import stat
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import RunStartError

log = logging.getLogger(__name__)


class DeadLetterError(RunStartError):
    """The dead-letter file cannot be written, so the run must not start; one line."""


class DeadLetterFile:
    """Appends ``{"time", "stage", "kind", "item", "error_type", "message"}`` lines.

    ``kind`` is ``failed`` (the worker raised on the item), ``lost`` (the item
    was never processed: its stage died or was stopped) or ``interrupted`` (not
    started because the run was interrupted). ``stage`` is the stage that
    failed or did not process the item: feeding the item back into that stage's
    input replays it (:mod:`engine.replay`). ``kinds`` counts the entries written per kind.
    :meth:`open` checks at start that the path can be written (raising
    :class:`DeadLetterError`); a run with no entry leaves no file behind.
    If a write fails later (disk full), :meth:`write` never raises: the file
    keeps only whole lines, ``broken`` says why, ``unrecorded`` counts the
    entries that are not in it, and ``on_broken`` is called once.
    Safe to call from any thread.
    """

    def __init__(self, path: Path, on_broken: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.count = 0
        self.kinds: Counter[str] = Counter()
        self.unrecorded = 0
        self.broken: str | None = None
        self._on_broken = on_broken
        self._fd: int | None = None
        self._size = 0  # bytes of whole lines in the file
        self._created: list[Path] = []  # what open() made, removed by close() if nothing was written
        self._lock = threading.Lock()  # one writer at a time keeps every line whole

    def open(self) -> None:
        """Open (creating if needed) the file for appending; raise :class:`DeadLetterError` if it cannot be."""
        missing = [p for p in (self.path, *self.path.parents) if not os.path.lexists(p)]
        try:
            for directory in reversed(missing[1:]):
                directory.mkdir()
                self._created.append(directory)
            # O_NONBLOCK: a FIFO with no reader fails at once instead of hanging the start.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
            os.set_blocking(self._fd, True)
            if missing:
                self._created.append(self.path)
            self._size = os.fstat(self._fd).st_size
            _refuse_foreign(self.path, self._fd)
        except DeadLetterError:
            self.close()
            raise
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in a path given in Python
            self._remove_created()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise DeadLetterError(f"cannot write the dead-letter file {self.path}: {reason}") from None

    def write(self, stage: str, kind: str, item: Any, error_type: str, message: str) -> None:
        entry = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "stage": stage,
            "kind": kind,
            "item": item,
            "error_type": error_type,
            "message": message,
        }
        data = (_dumps(entry) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            if self.broken is None:
                try:
                    self._append(data)
                    self.count += 1
                    self.kinds[kind] += 1
                    self._check_not_removed()  # if it was, this entry is counted in unrecorded with the rest
                    return
                except OSError as exc:
                    self._break(exc)
            self.unrecorded += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                if self.broken is None:
                    self._check_not_removed()
                os.close(self._fd)
                self._fd = None
            if self.count == 0 and self.broken is None:
                self._remove_created()

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            raise OSError(errno.EBADF, "the dead-letter file is not open")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    def _check_not_removed(self) -> None:
        # Someone deleted the file (or its directory) during the run: what it held is gone
        # with it, though every write "succeeded" into the unlinked inode.
        try:
            removed = os.fstat(self._fd).st_nlink == 0  # type: ignore[arg-type]
        except OSError:
            return
        if removed and self.count:
            self.unrecorded += self.count
            self.count = 0
            self._break(OSError(errno.ENOENT, "it was deleted during the run"))

    def _break(self, exc: OSError) -> None:
        try:  # keep only whole lines: a reader must never meet half an entry
            os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]
        except (OSError, TypeError):
            pass  # a device such as /dev/full cannot be truncated; nothing of it is kept anyway
        self.broken = f"cannot write the dead-letter file {self.path}: {exc.strerror or exc}"
        log.error("%s; stopping the run: items that fail from now on cannot be recorded", self.broken)
        if self._on_broken is not None:
            self._on_broken(self.broken)

    def _remove_created(self) -> None:
        for path in reversed(self._created):
            try:
                path.rmdir() if path.is_dir() else path.unlink()
            except OSError:
                pass  # someone else put something there meanwhile: leave it
        self._created = []


_ENTRY_START = b'{"'  # how every JSON line of objects begins, this file's own included


def _refuse_foreign(path: Path, fd: int) -> None:
    """Refuse a regular file that already holds something other than JSON lines of objects.

    Appending JSON lines to it (the pipeline file itself, a report, a source file)
    would corrupt it. Devices and pipes (/dev/null) are the user's choice.
    """
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_size == 0:
        return
    try:
        with open(path, "rb") as file:
            start = file.read(len(_ENTRY_START))
    except OSError:
        return  # write-only for us: it cannot be checked, and writing it is what was asked
    if start != _ENTRY_START:
        raise DeadLetterError(
            f"the dead-letter file {path} already holds something other than dead letters "
            f"(it begins {start!r}); choose another path"
        )


def _dumps(entry: dict[str, Any]) -> str:
    """One JSON line for any item: a value JSON cannot hold is written as its repr."""
    try:
        return json.dumps(entry, default=_jsonable, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):  # a circular or too deeply nested item
        entry = {**entry, "item": _safe_repr(entry["item"])}
        return json.dumps(entry, default=_jsonable, ensure_ascii=False)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # RecursionError, or a broken __repr__
        return f"<{type(value).__name__} that cannot be shown: {type(exc).__name__}>"


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
    return _safe_repr(value)
