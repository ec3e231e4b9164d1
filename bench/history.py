"""The history pipeline as the efficiency and baseline scenarios run it.

The shipped ``pipelines/crypto_history_pipeline.yaml`` is read as it is, and its
upstream (WikiWorker -> TaskPlanner) is replaced by a source stage that passes
on exactly R ready :class:`PriceTask` s. Its fetch stage (the real ``PriceWorker``,
HTTP through ``workers.http``) gets W threads; its sink (the real
``PostgresWorker``, with the shipped batch size) writes into the benchmark's
database. Queues, their sizes and the writer's settings are the shipped ones.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import run_interruptible
from engine import PipelineConfig, PipelineExecutor, StageConfig, StageStatus, load_pipeline
from engine.config import AutoInstances
from workers.records import PriceTask

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
HISTORY_PIPELINE = REPO_ROOT / "pipelines" / "crypto_history_pipeline.yaml"
FETCH_STAGE = "PriceWorker"
WRITE_STAGE = "PostgresWorker"
SOURCE_STAGE = "TaskSource"
SERVER_SEED = 1  # the price server's data; tasks are picked from the same data


class PassOn:
    """Source worker: each input value (a ready task) is passed on as it is."""

    def process(self, item: Any) -> list[Any]:
        return [item]


def price_tasks(count: int, seed: int = SERVER_SEED) -> list[PriceTask]:
    """``count`` distinct tasks that each have a price in the server's data (so each becomes a row).

    Ordered like ``TaskPlanner``'s: day by day, exchanges innermost, symbol by symbol.
    """
    import crypto_server

    dataset = crypto_server.load_dataset(seed=seed)
    tasks: list[PriceTask] = []
    days = list(dataset.days)
    for symbol in dataset.symbols:
        for day in days:
            for exchange in dataset.exchanges:
                if dataset.price(exchange, symbol, day) is not None:
                    tasks.append(PriceTask(symbol, exchange, day.isoformat()))
                    if len(tasks) == count:
                        return tasks
    raise ValueError(f"the server's data has only {len(tasks)} prices; asked for {count}")


def history_config(
    server_url: str, database_url: str, tasks: list[PriceTask], fetchers: int | AutoInstances, dead_letter: Path
) -> PipelineConfig:
    """The shipped history pipeline fed with ``tasks``, with ``fetchers`` PriceWorker threads (or ``instances: auto``)."""
    shipped = load_pipeline(HISTORY_PIPELINE, env={"PRICE_SERVER_URL": server_url})
    stages = {stage.name: stage for stage in shipped.stages}
    missing = [name for name in (FETCH_STAGE, WRITE_STAGE) if name not in stages]
    if missing:
        raise RuntimeError(f"{HISTORY_PIPELINE} has no stage {', '.join(missing)}; update bench/history.py")
    if isinstance(fetchers, AutoInstances):
        fetch = dataclasses.replace(stages[FETCH_STAGE], instances=fetchers.start, auto=fetchers)
    else:
        fetch = dataclasses.replace(stages[FETCH_STAGE], instances=fetchers)
    write = stages[WRITE_STAGE]
    write = dataclasses.replace(write, params={**write.params, "database_url": database_url})
    assert fetch.input_queue is not None and write.input_queue is not None
    source = StageConfig(
        name=SOURCE_STAGE,
        worker_class=PassOn,
        input_values=tuple(tasks),
        output_queues=(fetch.input_queue,),
    )
    return PipelineConfig(
        queues={name: shipped.queues[name] for name in (fetch.input_queue, write.input_queue)},
        stages=(source, fetch, write),
        name=f"bench_history_w{'auto' if isinstance(fetchers, AutoInstances) else fetchers}",
        monitor_interval=shipped.monitor_interval,
        dead_letter=dead_letter,
    )


def quiet_status(statuses: list[StageStatus]) -> None:
    """Status callback: the live status at debug level only, to keep the output readable."""
    for s in statuses:
        log.debug("%s: in %d out %d failed %d, %.0f/s", s.name, s.items_in, s.items_out, s.failed, s.rate)


@dataclass
class HistoryRun:
    """One run of the history pipeline: wall times and what the server saw."""

    requests: int
    fetchers: int
    latency: float
    run_seconds: float  # from run() called to run() returned: checks, start-up, fetch, last write, shutdown
    engine_seconds: float  # the engine's own figure (RunReport.seconds): without the stages' prepare_stage checks
    cpu_seconds: float  # CPU time (user + system) of this process, all threads, during the run
    fetch_seconds: float  # the fetch stage, from its start to its last thread's end (engine report)
    rows_written: int
    server: dict[str, Any]  # the server's counters for the run, and its CPU seconds during it
    pool: dict[str, Any] | None = None  # instances: auto: the fetch stage's final and peak size, and its bounds

    @property
    def ideal_seconds(self) -> float:
        return -(-self.requests // self.fetchers) * self.latency  # ceil(R / W) x L

    def as_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "ideal_seconds": round(self.ideal_seconds, 3),
            "run_ratio": round(self.run_seconds / self.ideal_seconds, 4),
            "fetch_ratio": round(self.fetch_seconds / self.ideal_seconds, 4),
        }


def run_history(
    server: Any, database_url: str, tasks: list[PriceTask], fetchers: int | AutoInstances, latency: float,
    workdir: Path,
) -> HistoryRun:
    """Run the pipeline once over ``tasks`` into an emptied ``prices`` table and check the outcome.

    ``server`` is a :class:`crypto_server.ServerProcess` sleeping ``latency`` per request.
    With ``fetchers`` an :class:`AutoInstances`, the fetch stage sizes itself; ``fetchers``
    in the result is then the largest size it reached.
    Raises ``RuntimeError`` if the run did not fetch and store every task, and
    ``KeyboardInterrupt`` if it was interrupted.
    """
    from bench.services import count_prices, empty_prices

    empty_prices(database_url)
    label = "auto" if isinstance(fetchers, AutoInstances) else fetchers
    dead_letter = workdir / f"failed-w{label}-{time.monotonic_ns()}.jsonl"
    config = history_config(server.url, database_url, tasks, fetchers, dead_letter)
    executor = PipelineExecutor(config, on_status=quiet_status)
    server.reset_stats()
    server_cpu_before = server.stats()["cpu_seconds"]
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    report = run_interruptible(executor)
    run_seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_before
    server_stats = server.stats()
    server_stats["cpu_seconds"] = round(server_stats["cpu_seconds"] - server_cpu_before, 3)  # this run's
    fetch = report.stage(FETCH_STAGE)
    rows = count_prices(database_url)
    if not report.ok or fetch.items_out != len(tasks) or rows != len(tasks):
        raise RuntimeError(
            f"history run with W={label} did not store every task: exit {report.exit_code} "
            f"({report.reason}), fetched {fetch.items_out}/{len(tasks)}, rows {rows}, "
            f"{report.dead_letters} dead letters in {dead_letter}"
        )
    pool = None
    if fetch.min_instances is not None:
        pool = {"size": fetch.pool_size, "peak": fetch.pool_peak, "min": fetch.min_instances, "max": fetch.max_instances}
    return HistoryRun(
        requests=len(tasks),
        fetchers=fetch.pool_peak,
        latency=latency,
        run_seconds=round(run_seconds, 4),
        engine_seconds=report.seconds,
        cpu_seconds=round(cpu_seconds, 3),
        fetch_seconds=fetch.seconds,
        rows_written=rows,
        server=server_stats,
        pool=pool,
    )


def floor_run(server: Any, tasks: list[PriceTask], fetchers: int) -> tuple[float, dict[str, Any]]:
    """The same requests from ``fetchers`` bare threads (``http.client``, one kept-alive connection
    each, no parsing, no database): the best this server and machine allow. Returns seconds, server stats.
    """
    parts = urlsplit(server.url)
    pending = iter(tasks)
    lock = threading.Lock()
    errors: list[str] = []

    def fetch() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            while True:
                with lock:
                    task = next(pending, None)
                if task is None:
                    return
                conn.request("GET", f"/price/{task.exchange}/{task.symbol}/{task.date}")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=fetch, name=f"floor-{i}") for i in range(fetchers)]
    server.reset_stats()
    server_cpu_before = server.stats()["cpu_seconds"]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"floor run: {len(errors)} thread(s) failed, first: {errors[0]}")
    stats = server.stats()
    stats["cpu_seconds"] = round(stats["cpu_seconds"] - server_cpu_before, 3)
    return seconds, stats


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def warm_up(server: Any, database_url: str, workdir: Path, latency: float) -> None:
    """A tiny run first: imports, the ``prices`` table, the connection pool are ready before timing."""
    started = time.perf_counter()
    run_history(server, database_url, price_tasks(20), 10, latency, workdir)
    log.info("warm-up run done in %.2fs", time.perf_counter() - started)
