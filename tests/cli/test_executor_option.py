"""``--executor``: chosen on the command line over the file; without Ray installed, one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.report import EXIT_CONFIG

REPO = Path(__file__).resolve().parents[2]

PIPELINE = """\
name: tiny
queues: [{name: Items}]
workers:
  - {name: Source, location: tests.engine.workers, class: Range, input_values: [[0, 3]], output_queues: [Items]}
  - {name: Echo, location: tests.engine.workers, class: Echo, input_queue: Items}
"""


def _main(tmp_path: Path, *args: str, executor_in_file: str | None = None) -> subprocess.CompletedProcess[str]:
    """main.py with a ``ray`` package that cannot be imported first on its path: Ray as if not installed."""
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    pipeline = tmp_path / "tiny.yaml"
    pipeline.write_text((f"executor: {executor_in_file}\n" if executor_in_file else "") + PIPELINE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake.parent), str(REPO)]))
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--no-progress", "--log-level", "WARNING", "--pipeline", str(pipeline),
         "--run-dir", str(tmp_path / "runs"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )


def test_executor_ray_without_ray_installed_is_one_line_and_exit_2(tmp_path):
    for result in (_main(tmp_path, "--executor", "ray"), _main(tmp_path, executor_in_file="ray")):
        assert result.returncode == EXIT_CONFIG, result.stderr
        assert result.stderr.splitlines() == [
            "error: executor: ray needs Ray, which is not installed: pip install -r requirements-ray.txt"
        ]
    assert not (tmp_path / "runs").exists()


def test_the_command_line_wins_over_the_file(tmp_path):
    result = _main(tmp_path, "--executor", "threads", executor_in_file="ray")
    assert result.returncode == 0, result.stderr
    assert '"executor": "threads"' in next((tmp_path / "runs").glob("*/report.json")).read_text()
