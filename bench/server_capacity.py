"""Server capacity: what the bundled price server costs per request, and the load it carries.

The server runs as the pipeline and the other scenarios run it: in a child
process of its own (``crypto_server.start_server_process``, gevent's server
where gevent is installed). The load comes from :mod:`bench.http_load`, one
thread multiplexing non-blocking sockets, whose CPU per request is reported
beside the server's so that a reader can see it was not the limit. CPU is read
with psutil from the server's process (user + system) before and after each
measurement, so the figure does not depend on how fast the load generator or
the machine was: it is what one core spends per request.

Three measurements, each the best of ``repeats`` (fewest failures, then fastest):

- **burst**: ``burst`` connections opened as fast as one thread can (50 at a
  time, the requests of those already connected sent in between) at
  ``--sleep 1``, one ``GET /price/...`` each (``Connection: close``); the time
  from the first connect to the last answer. 1 s is the floor; the rest is what the server adds
  (accepting, parsing, Flask, writing). The server's peak of requests in flight
  says whether it held them all at once.
- **sustained**: ``connections`` keep-alive connections at ``--sleep 0`` for
  ``seconds``, each sending its next request when its answer is in, like the
  pipeline's pooled fetcher threads: answers per second and the server's CPU per
  request (all its serving processes: one per core, see crypto_server.siblings).
  ``capacity per core`` (1 / CPU per request) is the rate one core of this
  machine could sustain, whatever else ran at the time.
- **accept**: ``accepts`` connections at ``--sleep 0``, each for one request
  (``Connection: close``), so each answer costs an accept: connections per
  second and the server's CPU per connection.

The goal for the sustained rate is 3x the request rate the pipeline reaches
(``PIPELINE_RATE``, the top of what the pipeline reaches on this machine): a mock
that saturates first would hide the pipeline's own limits. On a machine where
the load generator and the server share 2 cores, the rate measured is bounded by
both; capacity per core is the figure to compare.

To compare the two WSGI servers alone (``python -m bench`` measures the default)::

    python -m bench.server_capacity --server werkzeug [--quick] [--burst 500]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import psutil

from crypto_server import ServerProcess, ServerProcessError
from crypto_server.server import SERVERS

from bench.common import ScenarioResult, at_least, at_most, load_average, render_table
from bench.context import Context
from bench.http_load import LoadResult, run_load
from bench.services import price_server

log = logging.getLogger(__name__)

NAME = "server_capacity"
PATH = "/price/bitstamp/btc/2020-04-01"
PIPELINE_RATE = 2000  # requests/s: the most the pipeline is expected to reach on 2 cores
BURST_GOAL = 1.5  # seconds for the burst at sleep 1


@dataclass(frozen=True)
class Params:
    burst: int  # concurrent requests at sleep 1
    connections: int  # keep-alive connections of the sustained run
    seconds: float  # length of one sustained run
    accepts: int  # connections of the accept run
    repeats: int
    server: str | None = None  # the price server's WSGI server; None: its default (gevent if installed)


FULL = Params(burst=5000, connections=50, seconds=5.0, accepts=3000, repeats=3)
QUICK = Params(burst=5000, connections=50, seconds=2.0, accepts=1000, repeats=1)


@dataclass
class Measure:
    load: LoadResult
    server_cpu: float  # CPU seconds of the server's processes during the run
    peak_in_flight: int
    processes: int = 1  # serving processes (one per core, see crypto_server.siblings)

    @property
    def requests(self) -> int:
        return self.load.answered + sum(self.load.statuses.values())

    @property
    def rate(self) -> float:
        return self.requests / self.load.seconds if self.load.seconds else 0.0

    @property
    def server_cpu_per_request(self) -> float:
        return self.server_cpu / self.requests if self.requests else float("nan")

    @property
    def client_cpu_per_request(self) -> float:
        return self.load.client_cpu / self.requests if self.requests else float("nan")

    def details(self) -> dict[str, Any]:
        return {
            **asdict(self.load),
            "requests": self.requests,
            "rate": round(self.rate, 1),
            "server_cpu": round(self.server_cpu, 3),
            "server_cpu_per_request_us": round(self.server_cpu_per_request * 1e6, 1),
            "client_cpu_per_request_us": round(self.client_cpu_per_request * 1e6, 1),
            "peak_in_flight": self.peak_in_flight,
            "processes": self.processes,
        }


def _measure(server: ServerProcess, generate: Callable[[str, int], LoadResult]) -> Measure:
    """Run ``generate(host, port)`` against ``server`` and read the server's CPU around it."""
    parts = urlsplit(server.url)
    processes = _serving_processes(server.pid)
    server.reset_stats()
    before = _cpu(processes)
    load = generate(parts.hostname or "127.0.0.1", parts.port or 80)
    cpu = _cpu(processes) - before
    try:
        peak = server.stats()["peak_in_flight"]
    except ServerProcessError as exc:  # a server swamped by the load: the figures say the rest
        log.warning("%s", exc)
        peak = -1
    return Measure(load, cpu, peak, len(processes))


def _serving_processes(pid: int) -> list[psutil.Process]:
    """The server's process and the serving processes it forked (one per core)."""
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def _cpu(processes: list[psutil.Process]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in processes))


def _best(measures: list[Measure], key: Callable[[Measure], float]) -> Measure:
    return min(measures, key=lambda m: (m.load.failed, key(m)))


def _note(m: Measure) -> str:
    failed = f", {m.load.failed} failed" if m.load.failed else ""
    return f"{m.load.answered} ok{failed}; load generator {m.client_cpu_per_request * 1e6:.0f} us/request"


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    bursts: list[Measure] = []
    sustained: list[Measure] = []
    accepts: list[Measure] = []
    with price_server(sleep=1.0, seed=1, server_kind=params.server) as server:
        run_load("127.0.0.1", int(urlsplit(server.url).port or 80), PATH, connections=1)  # warm-up
        for attempt in range(params.repeats):
            one = _measure(server, lambda h, p: run_load(h, p, PATH, connections=params.burst, timeout=30))
            log.info(
                "burst %d/%d: %d requests, last answer after %.3fs (first %.3fs), %d failed %s %s, peak in flight %d",
                attempt + 1, params.repeats, params.burst, one.load.last_answer or -1, one.load.first_answer or -1,
                one.load.failed, one.load.statuses, one.load.errors, one.peak_in_flight,
            )  # fmt: skip
            bursts.append(one)
    with price_server(sleep=0.0, seed=1, server_kind=params.server) as server:
        for attempt in range(params.repeats):
            one = _measure(
                server, lambda h, p: run_load(h, p, PATH, connections=params.connections, duration=params.seconds)
            )
            log.info(
                "sustained %d/%d: %.0f requests/s, server %.0f us/request, generator %.0f us/request, %d failed",
                attempt + 1, params.repeats, one.rate, one.server_cpu_per_request * 1e6,
                one.client_cpu_per_request * 1e6, one.load.failed,
            )  # fmt: skip
            sustained.append(one)
            one = _measure(server, lambda h, p: run_load(h, p, PATH, connections=params.accepts))
            log.info(
                "accept %d/%d: %.0f connections/s, server %.0f us/connection, %d failed",
                attempt + 1, params.repeats, one.rate, one.server_cpu_per_request * 1e6, one.load.failed,
            )  # fmt: skip
            accepts.append(one)

    burst = _best(bursts, lambda m: m.load.last_answer or float("inf"))
    keep = _best(sustained, lambda m: -m.rate)
    accept = _best(accepts, lambda m: -m.rate)
    cheapest = min(m.server_cpu_per_request for m in sustained)
    result.details.update(
        params=asdict(params),
        statistic="best of repeats",
        pipeline_rate=PIPELINE_RATE,
        load_generator="bench.http_load: one thread, non-blocking sockets, selectors",
        bursts=[m.details() for m in bursts],
        sustained=[m.details() for m in sustained],
        accepts=[m.details() for m in accepts],
    )
    seconds = burst.load.last_answer if burst.load.last_answer is not None else float("inf")
    result.add(
        f"{params.burst:,} concurrent requests at sleep 1s, first connect to last answer",
        seconds,
        "s",
        goal=f"< {BURST_GOAL:g} s",
        passed=seconds < BURST_GOAL and not burst.load.failed,
        note=f"first answer {burst.load.first_answer or 0:.2f}s, "
        + f"peak in flight {burst.peak_in_flight if burst.peak_in_flight >= 0 else 'unknown'}; "
        + _note(burst),
    )
    result.add(
        "server CPU per request at the burst", burst.server_cpu_per_request * 1e6, "us", note="accept included"
    )
    goal_rate = 3 * PIPELINE_RATE
    result.add(
        f"sustained rate at sleep 0, {params.connections} keep-alive connections",
        keep.rate,
        "requests/s",
        goal=f">= {goal_rate:,} (3x {PIPELINE_RATE:,})",
        passed=at_least(keep.rate, goal_rate),
        note=f"server busy {keep.server_cpu / keep.load.seconds:.0%} of a core; " + _note(keep),
    )
    processes = keep.processes
    result.add(
        "server CPU per request, keep-alive",
        cheapest * 1e6,
        "us",
        goal=f"<= {processes * 1e6 / goal_rate:.0f} us" + (f" ({processes} processes)" if processes > 1 else ""),
        passed=at_most(cheapest, processes / goal_rate),
        note=f"least of repeats; all {processes} serving processes" if processes > 1 else "least of repeats",
    )
    result.add("capacity per core, keep-alive", 1 / cheapest, "requests/s", note="1 / CPU per request")
    if processes > 1:
        result.add(
            f"capacity of the {processes} serving processes, keep-alive",
            processes / cheapest,
            "requests/s",
            goal=f">= {goal_rate:,}",
            passed=at_least(processes / cheapest, goal_rate),
            note="one core each",
        )
    result.add(
        "accept rate at sleep 0, a connection per request",
        accept.rate,
        "connections/s",
        note=f"server {accept.server_cpu_per_request * 1e6:.0f} us/connection; " + _note(accept),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """This scenario alone, with the WSGI server chosen: prints the table and the load average."""
    parser = argparse.ArgumentParser(prog="python -m bench.server_capacity", description=main.__doc__)
    parser.add_argument("--server", choices=SERVERS, help="the price server's WSGI server (default: its default)")
    parser.add_argument("--quick", action="store_true", help="one repeat and shorter runs")
    parser.add_argument("--burst", type=int, help="concurrent requests at sleep 1 (default: 5000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_before = load_average()
    with Context(quick=args.quick) as ctx:
        params = replace(QUICK if args.quick else FULL, server=args.server)
        result = run(ctx, replace(params, burst=args.burst or params.burst))
    print(render_table(result.figures))
    print(f"server {args.server or 'default'}; load average before {load_before}, after {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
