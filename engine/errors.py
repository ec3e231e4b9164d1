"""Errors the engine raises to its callers."""

from __future__ import annotations


class PipelineConfigError(Exception):
    """A pipeline description that cannot run, with the place to fix it.

    ``str(error)`` is one line: ``file:line: where: what is wrong``.
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
        place = self.source or ""
        if place and self.line:
            place = f"{place}:{self.line}"
        parts = [p for p in (place, self.where, self.message) if p]
        return ": ".join(parts)


class StageSetupError(Exception):
    """A stage's ``prepare_stage`` refused to start; ``str(error)`` is one line naming the stage."""
