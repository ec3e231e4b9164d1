"""Workers for the Ray executor's tests (importable by the actors: the project root is on their path)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any


class Numbers:
    """A source: each input value ``n`` gives the numbers 0..n-1."""

    def process(self, n: int) -> list[int]:
        return list(range(n))


class Fetch:
    """Sleeps ``delay`` per item and passes it on; counts odd items as ``no_data`` and drops them.

    ``kill_at``: the process that takes that item first kills itself (SIGKILL), once per run
    (``marker`` is created when it does). ``fail_on``: raises on that item. ``die_always``: ends
    its process on every item.
    """

    def __init__(self, delay: float = 0.0, kill_at: int | None = None, marker: str | None = None,
                 fail_on: int | None = None, die_always: bool = False) -> None:
        self.delay, self.kill_at, self.marker = delay, kill_at, marker
        self.fail_on, self.die_always = fail_on, die_always
        self.counters: Counter[str] = Counter()

    def process(self, item: int) -> list[int] | None:
        if item == self.kill_at and self.marker and _first(self.marker):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.die_always:
            os._exit(1)
        if item == self.fail_on:
            raise ValueError(f"bad item {item}")
        time.sleep(self.delay)
        self.counters["fetched"] += 1
        if item % 2:
            self.counters["no_data"] += 1
            return None
        return [item]


class AppendSink:
    """Appends one line per item to ``path`` (O_APPEND, so every process's lines stay whole)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counters: Counter[str] = Counter()

    def process_batch(self, items: list[Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as file:
            file.write("".join(f"{item}\n" for item in items))
        self.counters["rows_written"] += len(items)


class BrokenBuild:
    def __init__(self) -> None:
        raise RuntimeError("no connection")

    def process(self, item: Any) -> None:
        return None


def _first(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def written(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []
