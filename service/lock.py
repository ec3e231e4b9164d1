"""One service per pipeline and run directory: a second one would run the same pipeline at the same time."""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import IO


class ServiceLockError(Exception):
    """Another service holds the lock, or the lock file cannot be made (the message is one line)."""


class ServiceLock:
    """An exclusive lock on ``<run_dir>/.service-<pipeline>.lock`` from :meth:`acquire` to :meth:`release`.

    The system releases it when the process ends, however it ends: a killed service never
    leaves a stale lock. The file holds the holder's process id, for the error message.
    """

    def __init__(self, run_dir: Path, pipeline: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", pipeline)[:64] or "pipeline"
        self.path = Path(run_dir) / f".service-{safe}.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`ServiceLockError` saying who has it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            file = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise ServiceLockError(f"cannot make {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip() or "?"
            file.close()
            raise ServiceLockError(
                f"another service already runs this pipeline into {self.path.parent} (process {holder}); "
                "stop it first, or give this one another --run-dir"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None

    def __enter__(self) -> ServiceLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
