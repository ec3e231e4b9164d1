"""Throughput at scale: the shipped pipeline at W = 400, 1,000 and 5,000 fetchers against the peer script.

The workload: S symbols x E exchanges (400 x 11 = 4,400 price requests) at L
seconds of server latency (0.2), through the shipped default pipeline
(``pipelines/wiki_crypto_pipeline.yaml``: WikiWorker reads the symbols from the
server's wiki page -> PriceWorker x W fetches each symbol's price on every
exchange in turn -> PostgresWorker x 2 upserts into the embedded PostgreSQL),
the price server in its own process with S assets. The YAML is changed only
where the workload says: ``instances`` of PriceWorker (an int, or ``auto``),
its ``exchanges``, WikiWorker's ``limit`` and the database.

Side by side, in the same run, against the same server and database: the peer,
:mod:`bench.peer_script` (the obvious ThreadPoolExecutor + requests script,
one Session per thread) doing the same requests with the same W, in a child
process of its own.

Per row (pipeline or peer, at one W):

- wall: the pipeline's ``run()`` called to returned (checks, start-up, fetching,
  the last write, shutdown); the peer's first request to its last commit;
- latency ideal: ceil(S / min(W, S)) x E x L (a symbol's exchanges are fetched in turn);
- CPU floor: (client CPU + server CPU) / cores, both measured during that row:
  the wall the row's work needs if it used every core all the time;
- efficiency: max(latency ideal, CPU floor) / wall (1.0 is perfect);
- client CPU per request: CPU seconds of the client process (all threads:
  engine, workers, database writes) / price requests; server CPU per request:
  the server process's (``psutil``, its children included) / price requests.

Goals: the pipeline's client CPU per request at most 0.5x the peer's, at every W;
at W=400, the peer's wall at least 1.5x the pipeline's.

:func:`run_workload` runs the pipeline once on this workload and is what other
scenarios (the ``auto`` sweep) call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg2.extensions
import requests
import yaml

from bench.common import ScenarioResult, at_least, at_most, cpu_seconds, run_interruptible
from bench.context import Context
from bench.history import quiet_status
from bench.services import REPO_ROOT, count_prices, empty_prices, libpq_params, price_server
from engine import PipelineExecutor, load_pipeline

log = logging.getLogger(__name__)

NAME = "scale"

SHIPPED_PIPELINE = REPO_ROOT / "pipelines" / "wiki_crypto_pipeline.yaml"
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_script.py"
SOURCE_STAGE, FETCH_STAGE, WRITE_STAGE = "WikiWorker", "PriceWorker", "PostgresWorker"
SERVER_SEED = 1
ALL_EXCHANGES = 11  # the bundled server's synthetic data lists eleven


@dataclass(frozen=True)
class Params:
    symbols: int  # S
    exchanges: int  # E
    sleep: float  # L, seconds the server sleeps per request
    fetchers: tuple[int, ...]  # the values of W
    cpu_goal: float = 0.5  # pipeline client CPU per request / the peer's, at most
    speedup_goal: float = 1.5  # peer wall / pipeline wall at speedup_at, at least
    speedup_at: int = 400


FULL = Params(symbols=400, exchanges=11, sleep=0.2, fetchers=(400, 1000, 5000))
QUICK = Params(symbols=100, exchanges=11, sleep=0.1, fetchers=(100, 400), speedup_at=100)


@dataclass
class WorkloadRun:
    """One run of the workload (the pipeline's, or the peer's): what it took and what it cost."""

    client: str  # "pipeline" or "peer"
    instances: int | str  # W as asked (an int, or "auto")
    symbols: int
    exchanges: int
    sleep: float
    seconds: float  # wall
    client_cpu_seconds: float
    server_cpu_seconds: float
    server_requests: int  # every request the server answered during the run (setup ones included)
    rate_limited: int  # 429 answers the server gave
    rows: int
    cores: int

    @property
    def requests(self) -> int:
        """Price requests: one per symbol and exchange."""
        return self.symbols * self.exchanges

    @property
    def latency_ideal(self) -> float:
        threads = self.instances if isinstance(self.instances, int) else self.symbols  # auto: the best any W does
        return -(-self.symbols // min(threads, self.symbols)) * self.exchanges * self.sleep

    @property
    def cpu_floor(self) -> float:
        return (self.client_cpu_seconds + self.server_cpu_seconds) / self.cores

    @property
    def efficiency(self) -> float:
        return max(self.latency_ideal, self.cpu_floor) / self.seconds

    @property
    def client_cpu_per_request(self) -> float:
        return self.client_cpu_seconds / self.requests

    @property
    def server_cpu_per_request(self) -> float:
        return self.server_cpu_seconds / self.requests

    def as_dict(self) -> dict[str, Any]:
        derived = ("requests", "latency_ideal", "cpu_floor", "efficiency", "client_cpu_per_request",
                   "server_cpu_per_request")  # fmt: skip
        return {**dataclasses.asdict(self), **{name: round(getattr(self, name), 6) for name in derived}}


@contextmanager
def workload_server(symbols: int = 400, sleep: float = 0.2) -> Iterator[Any]:
    """The price server of the workload (``symbols`` assets, ``sleep`` s per request), for several runs."""
    with price_server(sleep=sleep, jitter=0.0, seed=SERVER_SEED, assets=symbols) as server:
        yield server


def run_workload(
    ctx: Context,
    instances: int | str,
    symbols: int = 400,
    exchanges: int = ALL_EXCHANGES,
    sleep: float = 0.2,
    *,
    server: Any = None,
    fetch_options: Mapping[str, Any] | None = None,
) -> WorkloadRun:
    """Run the shipped pipeline once on the workload, with ``instances`` PriceWorker threads (or ``"auto"``).

    ``server``: a running :func:`workload_server` with at least ``symbols`` assets and
    ``sleep`` latency (else one is started for this run). ``fetch_options``: more keys for
    the PriceWorker stage, as written in YAML (``min_instances``, ``max_instances``...).
    Raises ``RuntimeError`` unless every symbol was fetched and every price stored.
    """
    with nullcontext(server) if server is not None else workload_server(symbols, sleep) as serving:
        database_url = ctx.database_url()
        empty_prices(database_url)
        path = _workload_file(ctx.workdir, serving.url, database_url, instances, symbols, exchanges, fetch_options)
        executor = PipelineExecutor(load_pipeline(path, env={}), on_status=quiet_status)
        with _measured(serving) as measured:
            report = run_interruptible(executor)
        fetch = report.stage(FETCH_STAGE)
        rows = count_prices(database_url)
        if not report.ok or fetch.items_in != symbols or rows != fetch.items_out or report.dead_letters:
            raise RuntimeError(
                f"the pipeline with W={instances} did not store every price: exit {report.exit_code} "
                f"({report.reason}), symbols {fetch.items_in}/{symbols}, records {fetch.items_out}, rows {rows}, "
                f"{report.dead_letters} dead letters"
            )
    return WorkloadRun("pipeline", instances, symbols, exchanges, sleep, rows=rows, **measured)


def run_peer(ctx: Context, server: Any, threads: int, symbols: int, exchanges: int, sleep: float) -> WorkloadRun:
    """Run :mod:`bench.peer_script` once with ``threads`` threads against ``server`` (it must have
    ``symbols`` assets and its eleven exchanges: the script asks for all of them)."""
    if exchanges != ALL_EXCHANGES:
        raise ValueError(f"the peer script fetches every exchange ({ALL_EXCHANGES}), not {exchanges}")
    database_url = ctx.database_url()
    empty_prices(database_url)
    dsn = psycopg2.extensions.make_dsn(**libpq_params(database_url))
    command = [sys.executable, str(PEER_SCRIPT), "--server", server.url, "--dsn", dsn, "--threads", str(threads)]
    with _measured(server) as measured:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the peer script failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    own = json.loads(done.stdout.strip().splitlines()[-1])
    rows = count_prices(database_url)
    if own["requests"] != symbols * exchanges or rows != own["rows"]:
        raise RuntimeError(f"the peer script made {own['requests']} requests and stored {rows} of {own['rows']} rows")
    # Its own clock and CPU: from its first request to its last commit, the interpreter's start-up left out.
    measured.update(seconds=round(own["seconds"], 4), client_cpu_seconds=round(own["cpu_seconds"], 3))
    return WorkloadRun("peer", threads, symbols, exchanges, sleep, rows=rows, **measured)


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    result.details["params"] = dataclasses.asdict(params)
    rows: dict[int, tuple[WorkloadRun, WorkloadRun]] = {}
    with workload_server(params.symbols, params.sleep) as server:
        # Warm-up: imports, the prices table, the database's caches are ready before timing.
        run_workload(ctx, 10, min(10, params.symbols), params.exchanges, params.sleep, server=server)
        for fetchers in params.fetchers:
            ours = run_workload(ctx, fetchers, params.symbols, params.exchanges, params.sleep, server=server)
            peer = run_peer(ctx, server, fetchers, params.symbols, params.exchanges, params.sleep)
            for one in (ours, peer):
                log.info(
                    "W=%d %s: %.2fs, ideal %.2fs, CPU floor %.2fs, client %.0f us/request, server %.0f us/request",
                    fetchers, one.client, one.seconds, one.latency_ideal, one.cpu_floor,
                    one.client_cpu_per_request * 1e6, one.server_cpu_per_request * 1e6,
                )  # fmt: skip
            rows[fetchers] = (ours, peer)
    result.details["runs"] = {str(w): {r.client: r.as_dict() for r in pair} for w, pair in rows.items()}
    for fetchers, (ours, peer) in rows.items():
        _add_figures(result, params, fetchers, ours, peer)
    return result


def _add_figures(result: ScenarioResult, params: Params, fetchers: int, ours: WorkloadRun, peer: WorkloadRun) -> None:
    for one in (ours, peer):
        result.add(
            f"W={fetchers} {one.client} wall",
            one.seconds,
            "s",
            note=f"ideal {one.latency_ideal:.2f}s, CPU floor {one.cpu_floor:.2f}s, "
            f"efficiency {one.efficiency:.2f}, R={one.requests} L={one.sleep:g}s",
        )
        result.add(
            f"W={fetchers} {one.client} client CPU/request",
            one.client_cpu_per_request * 1e6,
            "us",
            note=f"server {one.server_cpu_per_request * 1e6:.0f} us/request, {one.cores} cores",
        )
    ratio = ours.client_cpu_per_request / peer.client_cpu_per_request
    result.add(
        f"W={fetchers} client CPU/request: pipeline / peer",
        ratio,
        "x",
        goal=f"<= {params.cpu_goal:g}",
        passed=at_most(ratio, params.cpu_goal),
    )
    speedup = peer.seconds / ours.seconds
    goal = fetchers == params.speedup_at
    result.add(
        f"W={fetchers} wall: peer / pipeline",
        speedup,
        "x",
        goal=f">= {params.speedup_goal:g}" if goal else "",
        passed=at_least(speedup, params.speedup_goal) if goal else None,
    )


def _workload_file(
    workdir: Path,
    server_url: str,
    database_url: str,
    instances: int | str,
    symbols: int,
    exchanges: int,
    fetch_options: Mapping[str, Any] | None,
) -> Path:
    """The shipped pipeline's YAML with the workload's values, written under ``workdir``.

    Written as YAML and read back by the engine's own loader, so ``instances``
    takes whatever a user may write there (``auto`` included).
    """
    document = yaml.safe_load(SHIPPED_PIPELINE.read_text(encoding="utf-8"))
    stages = {stage["name"]: stage for stage in document["workers"]}
    missing = [name for name in (SOURCE_STAGE, FETCH_STAGE, WRITE_STAGE) if name not in stages]
    if missing:
        raise RuntimeError(f"{SHIPPED_PIPELINE} has no stage {', '.join(missing)}; update bench/scale.py")
    source, fetch, write = stages[SOURCE_STAGE], stages[FETCH_STAGE], stages[WRITE_STAGE]
    source["input_values"] = [f"{server_url}/wiki/List_of_cryptocurrencies"]
    source["params"] = {**source.get("params", {}), "limit": symbols}
    chosen: Any = "all"
    if exchanges != ALL_EXCHANGES:
        chosen = requests.get(f"{server_url}/exchanges", timeout=30).json()[:exchanges]
    fetch["params"] = {**fetch.get("params", {}), "base_url": server_url, "exchanges": chosen, "date": "latest"}
    fetch.update(instances=instances, **(fetch_options or {}))
    write["params"] = {**write.get("params", {}), "database_url": database_url}
    document["name"] = f"bench_scale_w{instances}"
    document["dead_letter"] = str(workdir / f"scale-failed-w{instances}-{time.monotonic_ns()}.jsonl")
    path = workdir / f"scale-w{instances}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def _measured(server: Any) -> Iterator[dict[str, Any]]:
    """Measure the block: wall, this process's CPU (all threads), the server's CPU and counters.

    Fills the yielded dict (the :class:`WorkloadRun` fields besides the workload's) when the block ends.
    """
    measured: dict[str, Any] = {}
    server_process = psutil.Process(server.pid)
    server.reset_stats()
    server_before, client_before = _process_cpu(server_process), cpu_seconds()
    started = time.perf_counter()
    yield measured
    seconds = time.perf_counter() - started
    client, server_cpu = cpu_seconds() - client_before, _process_cpu(server_process) - server_before
    stats = server.stats()
    measured.update(
        seconds=round(seconds, 4),
        client_cpu_seconds=round(client, 3),
        server_cpu_seconds=round(server_cpu, 3),
        server_requests=stats["requests"],
        rate_limited=stats["rate_limited"],
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
    )


def _process_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of ``process`` and its live children."""
    total = 0.0
    for one in (process, *process.children(recursive=True)):
        try:
            times = one.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
