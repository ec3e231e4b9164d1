"""Errors the engine raises to its callers."""

from __future__ import annotations

from engine.text import one_line


class PipelineConfigError(Exception):
    """A pipeline description that cannot run, with the place to fix it.

    ``str(error)`` is one line: ``file:line: where: what is wrong``, of bounded
    length whatever the parts hold (they may quote the file or an exception).
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None, where: str | None = None):
        self.message = message
        self.source = source
        self.line = line
        self.where = where
        super().__init__(message)

    def located(self, source: str, line: int | None) -> "PipelineConfigError":
        """The same error, placed in ``source`` at ``line`` unless it already has a place."""
        return PipelineConfigError(self.message, self.source or source, self.line or line, self.where)

    def __str__(self) -> str:
        place = one_line(self.source or "", 300)
        if place and self.line:
            place = f"{place}:{self.line}"
        where = one_line(self.where or "", 200)
        parts = [p for p in (place, where, one_line(self.message)) if p]
        return ": ".join(parts)


class RunStartError(Exception):
    """The run could not start (nothing was processed); ``str(error)`` is one line saying why."""


class StageSetupError(RunStartError):
    """A stage's ``prepare_stage`` refused to start; ``str(error)`` is one line naming the stage."""
