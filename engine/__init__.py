"""The pipeline engine: stages of worker threads joined by bounded queues.

It knows nothing about scraping, HTTP or databases: a stage runs any class
that follows the worker contract (see :mod:`engine.contract`).
"""

from engine.config import PipelineConfig, QueueConfig, StageConfig, load_pipeline
from engine.contract import ItemsFailed
from engine.errors import PipelineConfigError, RunStartError, StageSetupError
from engine.executor import PipelineExecutor, check_pipeline
from engine.report import RunReport, StageReport, StageStatus

__all__ = [
    "ItemsFailed",
    "PipelineConfig",
    "PipelineConfigError",
    "PipelineExecutor",
    "QueueConfig",
    "RunReport",
    "RunStartError",
    "StageConfig",
    "StageReport",
    "StageSetupError",
    "StageStatus",
    "check_pipeline",
    "load_pipeline",
]
