"""Child process of the engine overhead scenario: one run with W threads, its start-up and shutdown costs as JSON.

``python -m bench.threads_child --threads W --items N --delay S`` runs a source
of N items, a stage of W threads that each spend S seconds per item (a
stand-in for a request), and a one-thread sink, in a fresh process (so each W
starts from the same memory and no threads of an earlier run). Threads start on
demand, so with N = W items and S longer than starting them all, each of the W
threads takes one item. It prints one JSON line: seconds from ``run()`` to the
first status, to the first item begun and to the last item begun (every thread
running), from the last item done to the end of ``run()``, in all; the threads
that took items; this process's peak
resident set (``VmHWM``) and peak virtual size (``VmPeak``: thread stacks are
reserved there, mostly never touched) in KiB. ``--stack-kib`` sets
``threading.stack_size`` first, to see what a smaller stack saves.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import run_interruptible
from bench.memory_child import peak_rss_kib
from bench.noop import Count, Noop
from engine import PipelineConfig, PipelineExecutor, QueueConfig, StageConfig, StageStatus


class Clock:
    """When items began and ended, and in which threads (shared by the threads of one stage)."""

    def __init__(self) -> None:
        self.first: float | None = None  # the first item begun
        self.last_begun = 0.0
        self.last = 0.0  # the last item done
        self.threads: set[int] = set()
        self._lock = threading.Lock()  # every worker thread writes them

    def begun(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self.first is None:
                self.first = now
            self.last_begun = max(self.last_begun, now)
            self.threads.add(threading.get_ident())

    def done(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.last = max(self.last, now)


class Timed:
    """Spends ``delay`` seconds on each item, as a request would, and passes it on."""

    def __init__(self, delay: float, clock: Clock) -> None:
        self.delay = delay
        self.clock = clock

    def process(self, item: Any) -> list[Any]:
        self.clock.begun()
        time.sleep(self.delay)
        self.clock.done()
        return [item]


def _peak_virtual_kib() -> int:
    try:
        match = re.search(r"^VmPeak:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def measure(threads: int, items: int, delay: float) -> dict[str, Any]:
    """One run; the figures described in the module docstring."""
    clock = Clock()
    config = PipelineConfig(
        queues={"work": QueueConfig("work", 1000), "done": QueueConfig("done", 1000)},
        stages=(
            StageConfig(name="source", worker_class=Count, input_values=(items,), output_queues=("work",)),
            StageConfig(name="work", worker_class=Timed, instances=threads, input_queue="work",
                        output_queues=("done",), params={"delay": delay, "clock": clock}),
            StageConfig(name="sink", worker_class=Noop, input_queue="done"),
        ),
        name="bench_threads",
        monitor_interval=1.0,
    )
    first_status: list[float] = []

    def on_status(statuses: list[StageStatus]) -> None:
        if not first_status:
            first_status.append(time.monotonic())

    with tempfile.TemporaryDirectory(prefix="bench-threads-") as scratch:
        executor = PipelineExecutor(config, dead_letter=Path(scratch) / "failed.jsonl", on_status=on_status)
        started = time.monotonic()
        report = run_interruptible(executor)
        ended = time.monotonic()
    if not report.ok or report.stages[-1].items_in != items or clock.first is None:
        raise RuntimeError(f"the run with {threads} threads did not deliver every item: {report.reason}")
    return {
        "threads": threads,
        "items": items,
        "delay": delay,
        "first_status_seconds": round(first_status[0] - started, 3),
        "first_item_seconds": round(clock.first - started, 3),
        "all_running_seconds": round(clock.last_begun - started, 3),
        "threads_used": len(clock.threads),
        "last_item_to_end_seconds": round(ended - clock.last, 3),
        "seconds": round(ended - started, 3),
        "peak_rss_kib": peak_rss_kib(),
        "peak_virtual_kib": _peak_virtual_kib(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.threads_child")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--stack-kib", type=int, default=0, help="threading.stack_size in KiB (0: the default)")
    args = parser.parse_args()
    if args.stack_kib:
        threading.stack_size(args.stack_kib * 1024)
    after_imports = peak_rss_kib()
    figures = measure(args.threads, args.items, args.delay)
    print(json.dumps({**figures, "peak_rss_after_imports_kib": after_imports, "stack_kib": args.stack_kib}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
