"""Child process: the bundled price server, driven over stdin/stdout (see :mod:`bench.services`).

Prints ``{"url": ...}`` once listening, then answers one JSON line per command
line: ``stats`` (the request counters, and the CPU seconds this process has
used) or ``reset`` (zero them). It stops when its stdin closes: the parent
stopped it, or died. Ctrl+C is ignored here and left to the parent, which
stops its clients before it stops the server.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
from typing import Any

import crypto_server


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server_process")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handle = crypto_server.serve_in_background(port=0, sleep=args.sleep, jitter=args.jitter, seed=args.seed)
    try:
        print(json.dumps({"url": handle.url}), flush=True)
        for line in sys.stdin:  # ends when the parent closes our stdin
            command = line.strip()
            answer: dict[str, Any]
            if command == "stats":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                answer = {**handle.stats.snapshot(), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3)}
            elif command == "reset":
                handle.stats.reset()
                answer = {}
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
