"""One Ray runtime for the whole session, on 127.0.0.1 only, and helpers to run pipelines on it.

Every test module here is marked :data:`requires_ray`: skipped, with the reason, where Ray is not
installed (it is optional: requirements-ray.txt).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Ray replaces 127.0.0.1 with the machine's network address unless this is "0" when it is imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
try:
    import ray
    from ray.cluster_utils import Cluster
except ModuleNotFoundError:
    ray = None

requires_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed: pip install -r requirements-ray.txt")

from engine import RunReport, load_pipeline  # noqa: E402
from ray_executor import RayPipelineExecutor  # noqa: E402
from tests.faults.conftest import (  # noqa: E402,F401  (dataset and fault_server: fixtures used here)
    Watcher, check_accounting, count_rows, dataset, fault_server, plan, price_pipeline, write_pipeline,
)

LOOPBACK = "127.0.0.1"
W = "tests.ray.workers"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """The session's runtime: a head node of 2 CPUs on 127.0.0.1, no dashboard; this process is its driver.

    A :class:`ray.cluster_utils.Cluster`, so a test can add a node and remove it (see test_cluster.py).
    """
    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={
            "num_cpus": 2, "node_ip_address": LOOPBACK, "include_dashboard": False,
            # A node that vanishes is declared dead within about a second, not Ray's default 15 s.
            "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300,
                               "health_check_failure_threshold": 3},
        },
    )
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def run_on_ray(ray_cluster: Any, tmp_path: Path) -> Callable[..., RunReport]:
    """``run_on_ray(document, **options)``: the pipeline document run by the Ray executor on the session's runtime."""

    def run(document: dict[str, Any], **options: Any) -> RunReport:
        options.setdefault("run_dir", tmp_path / "runs")
        options.setdefault("dead_letter", tmp_path / f"dead-{uuid.uuid4().hex[:8]}.jsonl")
        options.setdefault("on_status", lambda statuses: None)
        return RayPipelineExecutor(load_pipeline(write_pipeline(tmp_path, document)), **options).run()

    return run


def stage(name: str, cls: str, **fields: Any) -> dict[str, Any]:
    """A stage entry using a worker of tests/ray/workers.py."""
    return {"name": name, "location": W, "class": cls, **fields}


def chain(sink: Path, *, count: int = 200, fetch: dict[str, Any] | None = None, instances: int = 4,
          max_restarts: int = 3) -> dict[str, Any]:
    """Numbers (0..count-1) -> Fetch x instances -> AppendSink (batches of 20) writing to ``sink``."""
    return {
        "name": "raytest",
        "monitor_interval": 0.2,
        "queues": [{"name": "Items", "maxsize": 50}, {"name": "Kept", "maxsize": 100}],
        "workers": [
            stage("Numbers", "Numbers", input_values=[count], output_queues=["Items"]),
            stage("Fetch", "Fetch", instances=instances, input_queue="Items", output_queues=["Kept"],
                  max_restarts=max_restarts, params=fetch or {}),
            stage("Sink", "AppendSink", instances=2, input_queue="Kept", batch_size=20, batch_timeout=0.1,
                  params={"path": str(sink)}),
        ],
    }


def run_with_fault(run_on_ray: Callable[..., RunReport], fault_server: Callable[..., Any], dataset: Any,
                   database_url: str, fault: Callable[[], None]) -> tuple[RunReport, Any]:
    """The price pipeline (300 tasks, 8 fetchers, about 2 s of fetching) on Ray, with ``fault()`` done
    once 40 rows are stored, so mid-fetch.

    Returns the report and the checked accounting (see tests.faults.conftest.check_accounting).
    """
    server = fault_server(sleep=0.05)
    symbols = sorted(dataset.symbols)[:10]
    tasks = plan(symbols, ["bitstamp", "kraken", "coinbase-pro"], "2020-04-01", "2020-04-10")
    document = price_pipeline(server_url=server.url, database_url=database_url, symbols=symbols,
                              start="2020-04-01", end="2020-04-10", fetchers=8)
    watcher = Watcher(lambda: count_rows(database_url) >= 40, fault)
    watcher.start()
    try:
        report = run_on_ray(document)
    finally:
        watcher.finish()
    assert watcher.fired.is_set(), "the fault was not done: the run ended first"
    assert report.exit_code == 0, report.reason
    accounting = check_accounting(report, tasks=tasks, dataset=dataset, database_url=database_url)
    assert not accounting.entries  # nothing failed or was lost: every call of a lost process ran again
    assert len(accounting.stored) + accounting.no_data == len(tasks)
    return report, accounting
