"""The database error callers catch, and how driver errors are shortened for it."""

from __future__ import annotations


class DatabaseUnavailable(Exception):
    """The database could not be reached or started; the message is one line, password masked."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (driver errors span many lines)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
