"""Bad worker params stop ``python main.py`` before anything starts: one line, exit 2, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _closed_port_url() -> str:
    """A URL nothing answers at: the params are refused before any request is made."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _pipeline(stage: str, params: dict[str, Any], base_url: str) -> dict[str, Any]:
    """WikiWorker -> ``stage``: stages are prepared in order, and the one under test is refused first."""
    given = {
        "WikiWorker": {"limit": 5},
        "TaskPlanner": {"start": "2020-04-01", "end": "2020-04-02", "exchanges": ["kraken"], "base_url": base_url},
        "PriceWorker": {"base_url": base_url, "exchanges": ["kraken"], "date": "2020-04-01"},
    }
    given[stage] = {**given[stage], **params}
    sink = "PriceWorker" if stage == "WikiWorker" else stage
    module = {"TaskPlanner": "workers.task_planner", "PriceWorker": "workers.price_worker"}[sink]
    return {
        "name": "params",
        "queues": [{"name": "Symbols"}],
        "workers": [
            {"name": "WikiWorker", "location": "workers.wiki_worker", "class": "WikiWorker",
             "input_values": [base_url + "/wiki/x"], "output_queues": ["Symbols"], "params": given["WikiWorker"]},
            {"name": sink, "location": module, "class": sink, "input_queue": "Symbols", "params": given[sink]},
        ],
    }


@pytest.mark.parametrize(
    ("stage", "params", "message"),
    [
        ("WikiWorker", {"limit": 0}, "limit must be a positive integer or None, got 0"),
        ("WikiWorker", {"ticker": "yes"}, "ticker must be true or false, got 'yes'"),
        ("TaskPlanner", {"step_days": 0}, "step_days must be a whole number of days >= 1, not 0"),
        ("TaskPlanner", {"exchanges": ["x" * 100]}, "exchange of 100 characters is longer than 32"),
        ("PriceWorker", {"mode": "scrape"}, "unknown mode 'scrape'; expected one of api, quote_page"),
        ("PriceWorker", {"date": "2020-13-01"}, "date must be YYYY-MM-DD or 'latest', not '2020-13-01'"),
    ],
)
def test_a_bad_worker_param_is_one_line_and_exit_2_before_the_run(
    tmp_path: Path, stage: str, params: dict[str, Any], message: str
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(_pipeline(stage, params, _closed_port_url()), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINE_LOCATION", "PRICE_SERVER_URL")}

    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--pipeline", str(path), "--no-progress",
         "--run-dir", str(tmp_path / "runs")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: stage {stage} cannot start: ") and message in line, result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
