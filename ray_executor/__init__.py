"""The Ray executor: the same pipelines, workers and report as :mod:`engine`, with the stages on a Ray cluster.

``executor: ray`` in a pipeline file, or ``python main.py --executor ray``. Ray is optional
(``pip install -r requirements-ray.txt``); this package imports it only when a run starts, so
importing it without Ray works and a run says in one line what to install.
"""

from ray_executor.executor import RayPipelineExecutor
from ray_executor.runtime import RayUnavailable

__all__ = ["RayPipelineExecutor", "RayUnavailable"]
