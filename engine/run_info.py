"""Facts about a run that its report records: when, what config, which code."""

from __future__ import annotations

import dataclasses
import functools
import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VERSION = "1.0"  # the project's version, reported when the checkout is not a git repository


def utc_now() -> str:
    """Now, as ISO 8601 in UTC (``2026-01-31T12:00:00.123456+00:00``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat()


def config_hash(config: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``config`` (a PipelineConfig, after ``${VAR}`` expansion).

    Canonical: keys sorted, no spaces, UTF-8; dataclasses and mappings as objects, tuples
    as lists, a class as ``module.qualname``, anything else as ``str()``. Two runs of the
    same expanded pipeline have the same hash, whatever the file's layout or comments.
    A container that holds itself is written ``"<cycle>"``; an object whose ``str()``
    fails, ``"<module.Class>"``: the hash never fails a run.
    """
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache  # one git call per process: the checkout does not change under a run
def project_version() -> str:
    """``git <commit>`` of the project's checkout, else ``VERSION``; never raises."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return VERSION
    commit = done.stdout.strip()
    return f"git {commit}" if done.returncode == 0 and commit else VERSION


def _canonical(value: Any, inside: frozenset[int] = frozenset()) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if id(value) in inside:  # a container that holds itself (a config built in Python can)
        return "<cycle>"
    inside |= {id(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name), inside) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, inside) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, inside) for v in value]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    try:
        return str(value)
    except Exception:  # an object that cannot be shown still gets a stable name
        return f"<{type(value).__module__}.{type(value).__qualname__}>"
