"""Helpers for the service tests: small pipelines of the engine's test workers, written as YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "main.py"
W = "tests.engine.workers"


def write_pipeline(path: Path, name: str = "svc", items: int = 20, delay: float = 0.01, fail_every: int = 0,
                   interval: float = 0.05, store_key: str = "") -> Path:
    """A three-stage pipeline: a source of ``items`` numbers, a slow middle stage, a sink.

    ``fail_every`` > 0 fails every n-th item in the middle stage. ``store_key`` is the sink's
    ``key`` param (``"${PRICE_SERVER_URL}"`` makes the pipeline one that needs a price server).
    """
    middle: dict[str, Any] = (
        {"class": "FailSome", "params": {"every": fail_every}} if fail_every
        else {"class": "Slow", "params": {"delay": delay}}
    )
    document = {
        "name": name,
        "monitor_interval": interval,
        "queues": [{"name": "numbers", "maxsize": 5}, {"name": "passed", "maxsize": 5}],
        "workers": [
            {"name": "Source", "location": W, "class": "Range", "input_values": [[0, items]],
             "output_queues": "numbers"},
            {"name": "Work", "location": W, "instances": 2, "input_queue": "numbers", "output_queues": "passed",
             **middle},
            {"name": "Store", "location": W, "class": "Slow", "params": {"delay": delay, "key": store_key},
             "input_queue": "passed"},
        ],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for ``python main.py`` in a test: no pipeline or price server from the developer's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_LOCATION", "PRICE_SERVER_URL")}
    env.update(extra)
    return env
