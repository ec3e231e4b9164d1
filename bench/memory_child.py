"""Child process of the memory scenario: run one no-op pipeline, print its peak RSS as JSON.

``python -m bench.memory_child --items N`` runs a three-stage pipeline (a lazy
source, one no-op stage, a no-op sink; see :mod:`bench.noop`) with bounded
queues, then prints one JSON line: items delivered, seconds, and this process's
peak resident set right after its imports and at the end, in KiB.

The peak is ``VmHWM`` from ``/proc/self/status``: the high-water mark of this
process's own memory. ``getrusage().ru_maxrss`` is printed too but is not used:
on Linux it carries over the parent's peak through ``fork``/``exec``, so a child
started by a 300 MB parent reports at least 300 MB whatever it does itself.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench.noop import noop_config, run_noop


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB (``VmHWM``; ``ru_maxrss`` where there is no /proc)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
    return int(match.group(1)) if match else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_child")
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--maxsize", type=int, default=1000)
    args = parser.parse_args()
    peak_after_imports = peak_rss_kib()
    config = noop_config(args.items, stages=2, threads=args.threads, maxsize=args.maxsize, name="bench_memory")
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as scratch:
        started = time.perf_counter()
        report = run_noop(config, Path(scratch) / "failed.jsonl")
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "items": args.items,
                "delivered": report.stages[-1].items_out,
                "stages": len(report.stages),
                "seconds": round(seconds, 3),
                "peak_rss_after_imports_kib": peak_after_imports,
                "peak_rss_kib": peak_rss_kib(),
                "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
