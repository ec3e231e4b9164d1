"""Bounded, one-line text for logs and error messages.

Items and error messages can be any size (a 10 MB page cell, a server's whole
answer in an exception). Whatever the engine or the CLI logs or prints goes
through these helpers, so a line never grows with the data it talks about.
The dead-letter file keeps the whole item and message; only what is shown is cut.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

MESSAGE_LIMIT = 500  # characters of an error message shown in a log line or a one-line error
ITEM_LIMIT = 200  # characters of an item's repr shown in a log line

# C0/C1 controls, DEL, and Unicode line/paragraph separators and bidi controls: never raw in a line.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line: whitespace runs become one space, other controls are escaped, cut at ``limit``."""
    head = text[: limit * 4 + 16]  # only this much can show; never scan megabytes for a short line
    head = " ".join(head.split())
    head = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), head)
    return cut(head, limit, len(text) - len(text[: limit * 4 + 16]))


def cut(text: str, limit: int, hidden: int = 0) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit and not hidden:
        return text
    left_out = max(len(text) - limit, 0) + hidden
    return f"{text[:limit]}... [{left_out} more characters]"


_REPR = reprlib.Repr()
_REPR.maxstring = ITEM_LIMIT
_REPR.maxother = ITEM_LIMIT
_REPR.maxlevel = 3


def short_repr(value: Any, limit: int = ITEM_LIMIT) -> str:
    """A bounded repr of ``value`` (cost bounded too for builtin containers); never raises."""
    try:
        text = _REPR.repr(value)
    except Exception as exc:  # a broken __repr__ must not break a log line
        text = f"<{type(value).__name__} whose repr failed: {type(exc).__name__}>"
    return one_line(text, limit)


def describe(error: BaseException | None, limit: int = MESSAGE_LIMIT) -> str:
    """``Type: message`` on one bounded line."""
    if error is None:
        return "unknown error"
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not break a log line
        text = ""
    name = type(error).__name__
    return f"{name}: {one_line(text, limit)}" if text.strip() else name
