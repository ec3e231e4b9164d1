"""Engine overhead: items per second through no-op stages, engine versus a hand-written chain.

Engine: a source stage yielding N small strings, then three stages of 4 threads
whose worker returns ``[item]`` (see :mod:`bench.noop`), with the engine's
default bounded queues. Hand-written chain: the same topology with plain
``queue.Queue`` s of the same size and plain threads: a producer thread, then
three stages of 4 threads doing ``put(get())``, one sentinel per thread (each
thread that meets a sentinel passes one on and ends). Wall time covers starting
the threads to the last one ending, for both. They alternate, ``repeats`` times
each; the best time of each is reported (the least disturbed by other load).

For reference, the same hand-written chain moving lists of ``batch`` items per
queue entry shows what moving items in small batches between threads gains.

Thread start-up and shutdown against W: for each W in ``widths``, a fresh child
process (:mod:`bench.threads_child`) runs W items through a stage of W threads
that spend 2 s per item (threads start on demand: this way every one starts and
takes one item), and reports the time from ``run()`` to the first status, to the
first item and to every thread running, from the last item to the end of the run,
and its peak RSS; the costs per thread (start-up, shutdown, RSS) are the slopes
between the smallest and the largest W.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.common import ScenarioResult, at_least, stopwatch
from bench.context import Context
from bench.noop import noop_config, run_noop
from bench.services import REPO_ROOT
from engine.config import DEFAULT_MAXSIZE

log = logging.getLogger(__name__)

NAME = "engine_overhead"
_SENTINEL = object()


@dataclass(frozen=True)
class Params:
    items: int
    stages: int
    threads: int
    repeats: int
    batch: int = 64  # items per queue entry in the batched reference chain
    goal: float = 1.0  # engine items/s over hand-written items/s
    widths: tuple[int, ...] = (20, 400, 1000, 5000)  # W for the thread start-up and shutdown costs
    first_status_goal: float = 1.0  # seconds from run() to the first status, whatever W


FULL = Params(items=200_000, stages=3, threads=4, repeats=5)
QUICK = Params(items=20_000, stages=3, threads=4, repeats=2, widths=(20, 1000, 3000))
CHILD_TIMEOUT = 300.0


def hand_chain(items: int, stages: int, threads: int, batch: int = 1, maxsize: int = DEFAULT_MAXSIZE) -> float:
    """Seconds for ``items`` items through the hand-written chain; checks every item arrived.

    With ``batch`` > 1 the queues carry lists of up to ``batch`` items instead of
    single items (the relays do not care; the sinks count list lengths).
    """
    queues: list[queue.Queue[object]] = [queue.Queue(maxsize) for _ in range(stages)]
    delivered = [0] * threads

    def produce() -> None:
        first = queues[0]
        if batch == 1:
            for number in range(items):
                first.put(f"item-{number}")
        else:
            for start in range(0, items, batch):
                first.put([f"item-{number}" for number in range(start, min(start + batch, items))])
        for _ in range(threads):
            first.put(_SENTINEL)

    def relay(source: queue.Queue[object], target: queue.Queue[object]) -> None:
        while True:
            item = source.get()
            target.put(item)  # a sentinel too: one per thread of the next stage
            if item is _SENTINEL:
                return

    def sink(source: queue.Queue[object], index: int) -> None:
        count = 0
        while (item := source.get()) is not _SENTINEL:
            count += 1 if batch == 1 else len(item)  # type: ignore[arg-type]
        delivered[index] = count

    workers = [threading.Thread(target=produce, name="hand-source")]
    for stage in range(stages):
        for index in range(threads):
            name = f"hand-{stage}-{index}"
            if stage < stages - 1:
                workers.append(threading.Thread(target=relay, args=(queues[stage], queues[stage + 1]), name=name))
            else:
                workers.append(threading.Thread(target=sink, args=(queues[stage], index), name=name))
    with stopwatch() as elapsed:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    if sum(delivered) != items:
        raise RuntimeError(f"hand-written chain delivered {sum(delivered)} of {items} items")
    return elapsed()


def engine_chain(ctx: Context, items: int, stages: int, threads: int) -> float:
    """Seconds for ``items`` items through the engine (``PipelineExecutor.run()``)."""
    config = noop_config(items, stages, threads, name="bench_engine_overhead")
    with stopwatch() as elapsed:
        run_noop(config, ctx.workdir / "engine-overhead-failed.jsonl")
    return elapsed()


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    engine_times: list[float] = []
    hand_times: list[float] = []
    batched_times: list[float] = []
    for attempt in range(params.repeats):
        engine_times.append(engine_chain(ctx, params.items, params.stages, params.threads))
        hand_times.append(hand_chain(params.items, params.stages, params.threads))
        batched_times.append(hand_chain(params.items, params.stages, params.threads, batch=params.batch))
        log.info(
            "run %d/%d: engine %.2fs, hand-written %.2fs, hand-written in batches of %d %.2fs",
            attempt + 1, params.repeats, engine_times[-1], hand_times[-1], params.batch, batched_times[-1],
        )  # fmt: skip
        time.sleep(0.1)  # let the previous run's threads go
    engine_rate = params.items / min(engine_times)
    hand_rate = params.items / min(hand_times)
    batched_rate = params.items / min(batched_times)
    ratio = engine_rate / hand_rate
    result.details.update(
        items=params.items,
        stages=params.stages,
        threads_per_stage=params.threads,
        queue_maxsize=DEFAULT_MAXSIZE,
        repeats=params.repeats,
        statistic="best of repeats",
        engine_seconds=[round(s, 3) for s in engine_times],
        hand_seconds=[round(s, 3) for s in hand_times],
        hand_batched_seconds=[round(s, 3) for s in batched_times],
        batch=params.batch,
        engine_items_per_second=round(engine_rate),
        hand_items_per_second=round(hand_rate),
        hand_batched_items_per_second=round(batched_rate),
        ratio=round(ratio, 3),
    )
    shape = f"{params.stages}x{params.threads} threads, {params.items:,} items"
    result.add("engine", engine_rate, "items/s", note=shape)
    result.add("hand-written queue.Queue chain", hand_rate, "items/s")
    result.add(f"hand-written chain, lists of {params.batch} items", batched_rate, "items/s", note="reference")
    result.add(
        "engine / hand-written", ratio, "x", goal=f">= {params.goal:.2f}", passed=at_least(ratio, params.goal)
    )
    _thread_costs(result, params)
    return result


def thread_run(threads: int, items: int) -> dict[str, Any]:
    """One run of :mod:`bench.threads_child` with ``threads`` threads, in a fresh process; its figures."""
    command = [sys.executable, "-m", "bench.threads_child", "--threads", str(threads), "--items", str(items)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"threads child failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _thread_costs(result: ScenarioResult, params: Params) -> None:
    runs = []
    for threads in params.widths:
        runs.append(thread_run(threads, threads))
        if runs[-1]["threads_used"] != threads:
            raise RuntimeError(f"W={threads}: only {runs[-1]['threads_used']} threads took an item")
        log.info("W=%d: %s", threads, runs[-1])
    result.details["threads"] = runs
    for run_ in runs:
        w = run_["threads"]
        result.add(f"W={w:,}: run() to first item", run_["first_item_seconds"], "s",
                   note=f"{run_['items']} items, 2 s each")
        result.add(f"W={w:,}: run() to every thread running", run_["all_running_seconds"], "s")
        result.add(f"W={w:,}: last item to end of run", run_["last_item_to_end_seconds"], "s")
        first = run_["first_status_seconds"]
        result.add(f"W={w:,}: run() to first status", first, "s", goal=f"< {params.first_status_goal:.0f} s",
                   passed=first < params.first_status_goal)
    small, large = runs[0], runs[-1]
    spread = large["threads"] - small["threads"]
    if spread > 0:
        for name, key in (("start-up", "all_running_seconds"), ("shutdown", "last_item_to_end_seconds")):
            cost = (large[key] - small[key]) / spread * 1e6
            result.add(f"{name} per thread", cost, "µs", note=f"slope from W={small['threads']} to {large['threads']}")
        per_thread = (large["peak_rss_kib"] - small["peak_rss_kib"]) / spread
        result.add("peak RSS per thread", per_thread, "KiB",
                   note=f"{small['peak_rss_kib'] / 1024:.0f} MB at W={small['threads']}, "
                        f"{large['peak_rss_kib'] / 1024:.0f} MB at W={large['threads']}")
