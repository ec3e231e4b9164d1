"""``instances: auto`` against the best fixed pool, and against a rate limit.

1. The sweep: R price requests through the history pipeline (see :mod:`bench.history`:
   a source of R tasks -> the real PriceWorker -> the real PostgresWorker into the
   embedded database), the price server in its own process sleeping L per request.
   The fetch stage runs with each fixed W of the sweep, then with ``instances: auto``.
   Throughput is R over the whole run's wall time (checks, start-up, fetch, last
   write, shutdown). Goal: auto reaches at least 90% of the best fixed W's throughput.
   R is 30,000 (about 20 s at the best W): a history run is long, and the pool needs
   about 2 s to grow from its start of 32 to its best size. On a run of a few seconds
   that growth is most of the run (on R=4,400, auto reached 0.65-0.84x).
2. The rate limit: the same pipeline with ``instances: auto`` against a server that
   admits at most N requests per second and answers the rest 429 with ``Retry-After``.
   Goal: fewer than 5% of all the requests it sent were answered 429.

Each run is checked: every task fetched and stored as one row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import crypto_server
from bench.common import ScenarioResult, at_least, at_most
from bench.context import Context
from bench.history import SERVER_SEED, HistoryRun, price_tasks, run_history, warm_up
from bench.services import price_server
from engine.config import AutoInstances

log = logging.getLogger(__name__)

NAME = "autoscale"


@dataclass(frozen=True)
class Params:
    requests: int  # R
    latency: float  # L, seconds the server sleeps per request
    fetchers: tuple[int, ...]  # the fixed W of the sweep
    auto: AutoInstances  # the bounds of the auto pool
    limited_requests: int  # R of the rate-limited run
    rate_limit: int  # requests per second the server admits there
    repeats: int  # runs of each W of the sweep (and of auto); the best counts
    goal: float = 0.90  # auto's throughput against the best fixed W
    goal_429: float = 0.05  # the largest share of 429 answers under the rate limit


FULL = Params(
    requests=30000, latency=0.2, fetchers=(200, 400, 800), auto=AutoInstances(1, 1000),
    limited_requests=3000, rate_limit=200, repeats=2,
)  # fmt: skip
QUICK = Params(
    requests=600, latency=0.1, fetchers=(8, 32, 128), auto=AutoInstances(1, 1000),
    limited_requests=600, rate_limit=100, repeats=1,
)  # fmt: skip


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    database_url = ctx.database_url()
    result.details["params"] = {
        "requests": params.requests, "latency": params.latency, "fetchers": list(params.fetchers),
        "auto": {"min_instances": params.auto.min_instances, "max_instances": params.auto.max_instances},
        "limited_requests": params.limited_requests, "rate_limit": params.rate_limit, "repeats": params.repeats,
        "statistic": "best of repeats",
        "goal": params.goal, "goal_429": params.goal_429, "throughput": "requests / whole run wall time",
    }  # fmt: skip
    tasks = price_tasks(params.requests)
    every: dict[str, list[HistoryRun]] = {}
    with price_server(sleep=params.latency, jitter=0.0, seed=SERVER_SEED) as server:
        warm_up(server, database_url, ctx.workdir, params.latency)
        for _ in range(params.repeats):  # one round of every W after the other: drifts in load hit all alike
            for fetchers in (*params.fetchers, params.auto):
                label = "auto" if isinstance(fetchers, AutoInstances) else str(fetchers)
                one = run_history(server, database_url, tasks, fetchers, params.latency, ctx.workdir)
                every.setdefault(label, []).append(one)
                log.info(
                    "W=%s: %.2fs, %.0f requests/s, server peak in flight %d%s", label, one.run_seconds,
                    one.requests / one.run_seconds, one.server["peak_in_flight"],
                    f", pool {one.pool}" if one.pool else "",
                )
    result.details["runs"] = {label: [r.as_dict() for r in rs] for label, rs in every.items()}
    runs = {label: min(rs, key=lambda r: r.run_seconds) for label, rs in every.items()}
    fixed = {label: r for label, r in runs.items() if label != "auto"}
    best_label, best = min(fixed.items(), key=lambda item: item[1].run_seconds)
    auto = runs["auto"]
    for label, one in runs.items():
        result.add(
            f"W={label} throughput", one.requests / one.run_seconds, "req/s",
            note=f"best {one.run_seconds:.2f}s of {[round(r.run_seconds, 2) for r in every[label]]} "
            f"for R={one.requests} at L={params.latency:g}s, "
            f"CPU {one.cpu_seconds:.1f}s + server {one.server['cpu_seconds']:.1f}s"
            + (f"; pool ended at {one.pool['size']}, peak {one.pool['peak']}" if one.pool else ""),
        )  # fmt: skip
    share = best.run_seconds / auto.run_seconds
    result.add(
        "auto / best fixed W throughput", share, "x", goal=f">= {params.goal:.2f}", passed=at_least(share, params.goal),
        note=f"best fixed W={best_label} ({best.run_seconds:.2f}s); auto {auto.run_seconds:.2f}s, peak {auto.fetchers}",
    )  # fmt: skip
    result.details["limited"] = _rate_limited(ctx, params, result)
    return result


def _rate_limited(ctx: Context, params: Params, result: ScenarioResult) -> dict[str, object]:
    """The auto pool against a server admitting ``rate_limit`` requests per second."""
    tasks = price_tasks(params.limited_requests)
    options = {"sleep": params.latency, "rate_limit": params.rate_limit, "seed": SERVER_SEED}
    with crypto_server.start_server_process(**options) as server:
        log.info("price server %s limited to %d requests/s (sleep %gs)", server.url, params.rate_limit, params.latency)
        one = run_history(server, ctx.database_url(), tasks, params.auto, params.latency, ctx.workdir)
    answered = one.server["requests"]
    refused = one.server["rate_limited"]
    share = refused / answered if answered else 0.0
    result.add(
        f"auto under --rate-limit {params.rate_limit}: 429 share", share * 100, "%",
        goal=f"< {params.goal_429 * 100:.0f}", passed=at_most(share, params.goal_429 - 1e-12),
        note=f"{refused} of {answered} requests; {one.run_seconds:.2f}s for R={one.requests} "
        f"(the limit allows {one.requests / params.rate_limit:.1f}s); pool ended at {one.pool['size'] if one.pool else '?'}, "
        f"peak {one.fetchers}",
    )  # fmt: skip
    return one.as_dict()
