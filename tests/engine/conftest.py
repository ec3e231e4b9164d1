"""Helpers to write a pipeline dict as YAML and run it with the engine."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from engine import RunReport
from yaml_reader import YamlPipelineExecutor

W = "tests.engine.workers"


def stage(name: str, cls: str, **fields: Any) -> dict[str, Any]:
    """A stage entry for the ``workers`` list, using a test worker class."""
    return {"name": name, "location": W, "class": cls, **fields}


@pytest.fixture
def key() -> str:
    """A fresh name under which test sinks record what they saw."""
    return uuid.uuid4().hex


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(document: dict[str, Any]) -> Path:
        path = tmp_path / f"pipeline-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return write


@pytest.fixture
def make_executor(tmp_path: Path, write_pipeline: Callable[[dict[str, Any]], Path]) -> Callable[..., YamlPipelineExecutor]:
    def make(document: dict[str, Any], **options: Any) -> YamlPipelineExecutor:
        options.setdefault("run_dir", tmp_path / "runs")
        options.setdefault("on_status", lambda statuses: None)
        return YamlPipelineExecutor(write_pipeline(document), **options)

    return make


@pytest.fixture
def run_pipeline(make_executor: Callable[..., YamlPipelineExecutor]) -> Callable[..., RunReport]:
    def run(document: dict[str, Any], **options: Any) -> RunReport:
        return make_executor(document, **options).run()

    return run
