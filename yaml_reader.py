"""Run a pipeline described in YAML.

    report = YamlPipelineExecutor("pipelines/wiki_crypto_pipeline.yaml").run()
    print(report.exit_code, report.stage("PriceWorker").items_out)

The file format (queues, and stages of worker threads under ``workers``) is
described in README.md; the engine itself lives in the ``engine`` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine import PipelineConfigError, PipelineExecutor, RunReport, load_pipeline

__all__ = ["PipelineConfigError", "RunReport", "YamlPipelineExecutor"]


class YamlPipelineExecutor(PipelineExecutor):
    """A :class:`engine.PipelineExecutor` for a YAML pipeline file.

    Reading and validating the file happens here, so a bad file raises
    :class:`PipelineConfigError` before anything starts. ``env`` supplies
    ``${VAR}`` values (default: the process environment); other keyword
    arguments are those of :class:`engine.PipelineExecutor`.
    """

    def __init__(self, path: str | Path, *, env: Mapping[str, str] | None = None, **options: Any) -> None:
        self.path = Path(path)
        super().__init__(load_pipeline(self.path, env), **options)
