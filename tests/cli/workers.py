"""Workers for the CLI tests' pipelines."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any


class WaitForFile:
    """Passes each item on once ``path`` exists: holds a run at the point a test chooses.

    Gives up (failing the item) after ``timeout`` seconds, so a test that forgets
    to open the gate cannot hang the run.
    """

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout

    def process(self, item: Any) -> Iterator[Any]:
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path} did not appear within {self.timeout:g}s")
            time.sleep(0.02)
        yield item
