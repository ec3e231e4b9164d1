"""Memory: peak RSS while 1,000,000 items pass through a three-stage pipeline with bounded queues.

The pipeline (a lazy source, a no-op stage of 4 threads, a no-op sink of 4
threads, queues of 1,000) runs in a fresh child process, ``python -m
bench.memory_child``, so the benchmark's own state (the other scenarios' data,
threads, imports) does not count. The figure is the child's peak resident set,
which it reads itself at its end (``VmHWM``). Not ``ru_maxrss``: on Linux a child
inherits its parent's peak through fork/exec, so ``RUSAGE_CHILDREN`` (recorded in
the JSON for comparison) shows at least the benchmark's own size. The child's
peak right after its imports is reported too, to show what the items add.
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
from dataclasses import dataclass

from bench.common import ScenarioResult
from bench.context import Context
from bench.services import REPO_ROOT

log = logging.getLogger(__name__)

NAME = "memory"
CHILD_TIMEOUT = 600.0


@dataclass(frozen=True)
class Params:
    items: int
    threads: int = 4
    maxsize: int = 1000
    goal_mb: float = 200.0


FULL = Params(items=1_000_000)
QUICK = Params(items=100_000)


def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    command = [
        sys.executable, "-m", "bench.memory_child", "--items", str(params.items),
        "--threads", str(params.threads), "--maxsize", str(params.maxsize),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    children_peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if child["delivered"] != params.items:
        raise RuntimeError(f"memory child delivered {child['delivered']} of {params.items} items")

    peak_mb = child["peak_rss_kib"] / 1024
    imports_mb = child["peak_rss_after_imports_kib"] / 1024
    log.info("memory child: %d items in %.1fs, peak RSS %.1f MB", params.items, child["seconds"], peak_mb)
    result.details.update(
        params={"items": params.items, "threads": params.threads, "queue_maxsize": params.maxsize},
        child=child,
        rusage_children_maxrss_kib=children_peak_kib,
        peak_rss_mb=round(peak_mb, 1),
    )
    result.add(
        f"peak RSS, {params.items:,} items",
        peak_mb,
        "MB",
        goal=f"< {params.goal_mb:.0f} MB",
        passed=peak_mb < params.goal_mb,
        note=f"{imports_mb:.0f} MB after imports, {child['seconds']:.1f}s",
    )
    return result
