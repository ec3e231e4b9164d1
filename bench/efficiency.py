"""Efficiency against the ideal: the history pipeline's wall time over ceil(R / W) x L.

R price requests go through the shipped history pipeline (see :mod:`bench.history`:
a source of R tasks -> the real PriceWorker with W threads -> the real
PostgresWorker into the embedded database) while the price server, in its own
process, sleeps exactly L seconds per request (no jitter, no faults). With W
threads each waiting L per request, no run can beat ceil(R / W) x L.

Two ratios per W: the whole run (``run()`` called to returned: the stages'
``prepare_stage`` checks, which include one request to the server and so one L,
thread start-up, fetching, the last database write, shutdown), which the goal is
held to, and the fetch stage alone (its start to its last thread's end, from the
engine's report), for information. Each W runs ``repeats`` times; the best run
is reported. The server's peak of requests in flight shows whether it kept up
with W; the CPU seconds used by the pipeline's process and by the server's
process during the run show how close the run came to what the cores can give.

For reference, the floor: the same R requests at the largest W from bare threads
(``http.client``, no parsing, no engine, no database), the best ratio this
server and machine allow; the pipeline cannot be expected to beat it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bench.common import ScenarioResult, at_most
from bench.context import Context
from bench.history import SERVER_SEED, HistoryRun, floor_run, price_tasks, run_history, warm_up
from bench.services import price_server

log = logging.getLogger(__name__)

NAME = "efficiency"


@dataclass(frozen=True)
class Params:
    requests: int  # R
    latency: float  # L, seconds the server sleeps per request
    fetchers: tuple[int, ...]  # the values of W
    repeats: int
    goal: float = 1.10


FULL = Params(requests=2000, latency=0.2, fetchers=(10, 50, 100), repeats=2)
QUICK = Params(requests=300, latency=0.1, fetchers=(10, 100), repeats=1)


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    database_url = ctx.database_url()
    tasks = price_tasks(params.requests)
    result.details["params"] = {
        "requests": params.requests, "latency": params.latency, "fetchers": list(params.fetchers),
        "repeats": params.repeats, "goal": params.goal, "statistic": "best of repeats",
    }  # fmt: skip
    runs: dict[int, list[HistoryRun]] = {}
    with price_server(sleep=params.latency, jitter=0.0, seed=SERVER_SEED) as server:
        warm_up(server, database_url, ctx.workdir, params.latency)
        for fetchers in params.fetchers:
            for attempt in range(params.repeats):
                one = run_history(server, database_url, tasks, fetchers, params.latency, ctx.workdir)
                log.info(
                    "W=%d run %d/%d: %.2fs (fetch stage %.2fs), ideal %.2fs, server peak in flight %d",
                    fetchers, attempt + 1, params.repeats, one.run_seconds, one.fetch_seconds,
                    one.ideal_seconds, one.server["peak_in_flight"],
                )
                runs.setdefault(fetchers, []).append(one)
        widest = max(params.fetchers)
        floors = [floor_run(server, tasks, widest) for _ in range(params.repeats)]
        log.info("W=%d floor (bare client threads, no pipeline): %s", widest, [round(f[0], 2) for f in floors])

    result.details["runs"] = {str(w): [r.as_dict() for r in rs] for w, rs in runs.items()}
    best_runs = {}
    for fetchers, rs in runs.items():
        best = min(rs, key=lambda r: r.run_seconds)
        best_runs[fetchers] = best
        ratio = best.run_seconds / best.ideal_seconds
        result.add(
            f"W={fetchers} run / ideal",
            ratio,
            "x",
            goal=f"<= {params.goal:.2f}",
            passed=at_most(ratio, params.goal),
            note=f"{best.run_seconds:.2f}s / {best.ideal_seconds:.2f}s, R={best.requests} L={best.latency:g}s, "
            f"checks {best.run_seconds - best.engine_seconds:.2f}s",
        )
        result.add(
            f"W={fetchers} fetch stage / ideal",
            best.fetch_seconds / best.ideal_seconds,
            "x",
            note=f"{best.fetch_seconds:.2f}s, server peak {best.server['peak_in_flight']}, "
            f"CPU {best.cpu_seconds:.1f}s + server {best.server['cpu_seconds']:.1f}s",
        )
    result.details["best"] = {str(w): r.as_dict() for w, r in best_runs.items()}
    floor_seconds, floor_server = min(floors, key=lambda f: f[0])
    floor_ideal = -(-params.requests // widest) * params.latency
    result.details["floor"] = {
        "fetchers": widest, "seconds": [round(f[0], 3) for f in floors], "best_seconds": round(floor_seconds, 3),
        "ratio": round(floor_seconds / floor_ideal, 4), "server": floor_server,
    }  # fmt: skip
    result.add(
        f"W={widest} floor: bare client / ideal",
        floor_seconds / floor_ideal,
        "x",
        note=f"{floor_seconds:.2f}s, no pipeline: what the server and machine allow",
    )
    return result
