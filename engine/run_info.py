"""Facts about a run that its report records: when, what config, which code."""

from __future__ import annotations

import dataclasses
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
    """
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


def _canonical(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
