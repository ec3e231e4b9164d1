"""Ray against threads on one machine: the history workload run by each executor (``--only ray``).

R ready price tasks go through the shipped history pipeline (see :mod:`bench.history`: a source
-> the real PriceWorker with W fetchers -> the real PostgresWorker into the embedded database)
while the price server sleeps L per request; first with threads in this process, then with the
Ray executor on a local runtime of this machine's cores, bound to 127.0.0.1 without a dashboard.

Per executor: the run's wall time (best of ``repeats``), the CPU seconds and the peak memory of
everything that executor runs (this process; for Ray also its runtime and actor processes, sampled
every 0.2 s), and its start-up cost: a run of ``startup_tasks`` tasks (the fixed cost of one run),
plus for Ray the seconds its local runtime takes to start. On one machine threads should win:
Ray pays for processes, serialisation and a driver round trip per item, and buys what one machine
cannot give (more machines, and surviving the loss of one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psutil

from bench.common import ScenarioResult, run_interruptible
from bench.context import Context
from bench.history import SERVER_SEED, history_config, price_tasks, quiet_status
from bench.services import count_prices, empty_prices, price_server
from engine import PipelineExecutor

log = logging.getLogger(__name__)

NAME = "ray"
SAMPLE_SECONDS = 0.2


@dataclass(frozen=True)
class Params:
    requests: int  # R
    latency: float  # L, seconds the server sleeps per request
    fetchers: int  # W: PriceWorker instances (threads; on Ray, actors x threads)
    repeats: int
    startup_tasks: int = 20


FULL = Params(requests=3000, latency=0.05, fetchers=50, repeats=2)
QUICK = Params(requests=300, latency=0.05, fetchers=50, repeats=1)


def run(ctx: Context, params: Params) -> ScenarioResult:
    from ray_executor import runtime

    ray = runtime.import_ray()  # before any other import of Ray: keeps its runtime on 127.0.0.1
    from ray_executor import RayPipelineExecutor

    result = ScenarioResult(NAME)
    result.details["params"] = {"requests": params.requests, "latency": params.latency, "fetchers": params.fetchers,
                                "repeats": params.repeats, "startup_tasks": params.startup_tasks}
    database_url = ctx.database_url()
    tasks = price_tasks(params.requests)
    few = price_tasks(params.startup_tasks)
    measured: dict[str, dict[str, Any]] = {}
    with price_server(sleep=params.latency, jitter=0.0, seed=SERVER_SEED) as server:

        def threads(work: list[Any]) -> PipelineExecutor:
            return PipelineExecutor(_config(server.url, database_url, work, params, ctx), on_status=quiet_status)

        _run(threads, few, database_url)  # warm-up: imports, the table, the connection pool
        measured["threads"] = _measure(threads, tasks, few, database_url, params.repeats, _this_process)

        started = time.perf_counter()
        # "local": a runtime of this machine's own, whatever RAY_ADDRESS says
        ray.init(address="local", _node_ip_address=runtime.LOOPBACK, include_dashboard=False,
                 logging_level=logging.WARNING)
        ray_start = time.perf_counter() - started
        try:
            def on_ray(work: list[Any]) -> PipelineExecutor:
                config = _config(server.url, database_url, work, params, ctx)
                return RayPipelineExecutor(config, on_status=quiet_status)

            measured["ray"] = _measure(on_ray, tasks, few, database_url, params.repeats, _ray_processes)
        finally:
            ray.shutdown()
    measured["ray"]["runtime_start_seconds"] = round(ray_start, 3)
    result.details["runs"] = measured

    ideal = -(-params.requests // params.fetchers) * params.latency
    shape = f"R={params.requests} W={params.fetchers} L={params.latency:g}s"
    for name, m in measured.items():
        result.add(f"{name}: wall", m["seconds"], "s", note=f"{shape}, ideal {ideal:.2f}s")
        result.add(f"{name}: CPU", m["cpu_seconds"], "s", note="every process of the executor, server excluded")
        result.add(f"{name}: peak memory", m["peak_rss_mb"], "MB", note="RSS summed over its processes")
        startup = f"a run of {params.startup_tasks} tasks"
        if name == "ray":
            startup += f"; the local runtime starts in {ray_start:.2f}s more"
        result.add(f"{name}: start-up", m["startup_seconds"], "s", note=startup)
    result.add("ray / threads wall", measured["ray"]["seconds"] / measured["threads"]["seconds"], "x",
               note="above 1: threads win on one machine, as expected")
    return result


def _config(server_url: str, database_url: str, tasks: list[Any], params: Params, ctx: Context) -> Any:
    dead_letter = ctx.workdir / f"ray-bench-{time.monotonic_ns()}.jsonl"
    return history_config(server_url, database_url, tasks, params.fetchers, dead_letter)


def _measure(
    make: Callable[[list[Any]], PipelineExecutor], tasks: list[Any], few: list[Any], database_url: str,
    repeats: int, processes: Callable[[], list[psutil.Process]],
) -> dict[str, Any]:
    startup = _run(make, few, database_url)
    best: dict[str, Any] | None = None
    for _ in range(repeats):
        with _sampler(processes) as usage:
            seconds = _run(make, tasks, database_url)
        one = {"seconds": round(seconds, 3), **usage()}
        log.info("%s", one)
        if best is None or one["seconds"] < best["seconds"]:
            best = one
    assert best is not None
    return {**best, "startup_seconds": round(startup, 3)}


def _run(make: Callable[[list[Any]], PipelineExecutor], tasks: list[Any], database_url: str) -> float:
    empty_prices(database_url)
    started = time.perf_counter()
    report = run_interruptible(make(tasks))
    seconds = time.perf_counter() - started
    rows = count_prices(database_url)
    if not report.ok or rows != len(tasks):
        raise RuntimeError(f"{report.executor} run did not store every task: exit {report.exit_code} "
                           f"({report.reason}), rows {rows}/{len(tasks)}")
    return seconds


def _this_process() -> list[psutil.Process]:
    return [psutil.Process()]


_RAY_MARKERS = ("raylet", "gcs_server", "ray::", "/ray/_private/", "/ray/dashboard/", "default_worker.py")


def _ray_processes() -> list[psutil.Process]:
    """This process and every process of the local Ray runtime it started (services and actors),
    not the price server or the database, which are its children too."""
    found = [psutil.Process()]
    for process in psutil.Process().children(recursive=True):
        try:
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if any(marker in command for marker in _RAY_MARKERS):
            found.append(process)
    return found


@contextmanager
def _sampler(processes: Callable[[], list[psutil.Process]]) -> Iterator[Callable[[], dict[str, float]]]:
    """CPU seconds and peak summed RSS of ``processes()`` while the block runs, sampled every 0.2 s.

    A process that ends between two samples keeps the CPU time of its last sample.
    """
    cpu_before: dict[int, float] = {}
    cpu_last: dict[int, float] = {}
    peak = [0.0]
    stop = threading.Event()
    lock = threading.Lock()  # the sampling thread and the final sample both write the figures

    def sample() -> None:
        total_rss = 0.0
        with lock:
            for process in processes():
                try:
                    with process.oneshot():
                        times, rss = process.cpu_times(), process.memory_info().rss
                except psutil.Error:
                    continue  # ended meanwhile
                cpu = times.user + times.system
                cpu_before.setdefault(process.pid, 0.0 if started else cpu)  # born during the run: all of it counts
                cpu_last[process.pid] = cpu
                total_rss += rss
            peak[0] = max(peak[0], total_rss)

    started = False
    sample()
    started = True

    def loop() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            sample()

    thread = threading.Thread(target=loop, name="bench-sampler", daemon=True)
    thread.start()
    try:
        yield lambda: {
            "cpu_seconds": round(sum(cpu_last[p] - cpu_before[p] for p in cpu_last), 3),
            "peak_rss_mb": round(peak[0] / 2**20, 1),
        }
    finally:
        stop.set()
        thread.join()
        sample()

