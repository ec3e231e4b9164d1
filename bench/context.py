"""What scenarios of one benchmark run share: the database, a scratch directory, earlier results."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from bench.common import ScenarioResult
from bench.services import embedded_database


class Context:
    """Shared state of one run; use it as a context manager so everything started is stopped.

    The embedded database is started on first use and stopped (and deleted) when
    the run ends; the scratch directory (dead-letter files...) is deleted too.
    """

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.results: dict[str, ScenarioResult] = {}
        self._stack = ExitStack()
        self._database_url: str | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
        self._stack.callback(shutil.rmtree, self.workdir, ignore_errors=True)

    def database_url(self) -> str:
        """The URL of the run's embedded PostgreSQL, started on the first call."""
        if self._database_url is None:
            self._database_url = self._stack.enter_context(embedded_database())
        return self._database_url

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
