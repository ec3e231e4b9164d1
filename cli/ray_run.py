"""``--executor ray``: the Ray executor for a pipeline file, with what its actors need to reach.

The actors run on any node of the cluster, so the database and the price server must be
reachable from every node. A run that needs this machine (the embedded PostgreSQL, a private
bundled price server) refuses a cluster of several machines in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine import PipelineConfig, RunStartError
from engine.executor import PipelineExecutor

EMBEDDED_DATABASE = "the pipeline asks for the embedded PostgreSQL, which only this machine can reach"
PRIVATE_PRICE_SERVER = "the bundled price server started for this run listens on 127.0.0.1 only"


def ray_executor(
    config: PipelineConfig, path: Path, env: Mapping[str, str] | None, private_server: bool, **options: Any
) -> PipelineExecutor:
    """A :class:`ray_executor.RayPipelineExecutor` for ``config``; :class:`RunStartError` (one line) if it cannot run.

    ``env`` is the environment the pipeline was read with; ``private_server``: this run started
    its own bundled price server.
    """
    from ray_executor import RayPipelineExecutor, runtime
    from workers.database import DatabaseUnavailable, resolve_database_url
    from workers.postgres_worker import PostgresWorker

    env = os.environ if env is None else env
    writers = [s for s in config.stages if issubclass(s.worker_class, PostgresWorker) and not s.params.get("database_url")]
    local_only = [PRIVATE_PRICE_SERVER] if private_server else []
    if writers and not env.get("DATABASE_URL") and not env.get("POSTGRES_HOST"):
        local_only.append(EMBEDDED_DATABASE)
    runtime.refuse_remote_address(local_only)  # before the embedded database is started for nothing
    env_vars = {}
    if writers:
        try:  # the URL every actor's writer uses (the embedded server is started here, as the writer's check would)
            env_vars["DATABASE_URL"] = resolve_database_url(env)
        except DatabaseUnavailable as exc:
            raise RunStartError(str(exc)) from None
    executor = RayPipelineExecutor(config, env_vars=env_vars, local_only=local_only, **options)
    executor.path = path
    return executor
