"""Child process of the memory scenario: run one no-op pipeline, print its peak RSS as JSON.

``python -m bench.memory_child --items N`` runs a three-stage pipeline (a lazy
source, one no-op stage, a no-op sink; see :mod:`bench.noop`) with bounded
queues, then prints one JSON line: items delivered, seconds, and this process's
``ru_maxrss`` right after its imports and at the end (KiB on Linux).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench.noop import noop_config, run_noop


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_child")
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--maxsize", type=int, default=1000)
    args = parser.parse_args()
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
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
                "maxrss_after_imports_kib": rss_after_imports,
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
