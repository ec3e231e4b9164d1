"""``python main.py serve --every 15m`` (or ``python main.py --every 15m``): run the pipeline on a schedule.

Runs never overlap and start on a fixed grid (the first start plus a multiple of
``--every``); a run that fails, or cannot start, is recorded and the schedule goes on.
The first Ctrl+C (or SIGTERM) lets the run in progress finish, then exits 0 (at once
when idle); the next ones interrupt that run as they interrupt a single run (exit 130).
The private price server and the embedded database are started once, for the service.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from engine import RunReport
from engine.report import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK, EXIT_STAGE_DIED
from engine.run_info import utc_now
from engine.text import describe
from service.history import NOT_STARTED, REPORT_NAME, prune_runs
from service.live import LiveRun
from service.lock import ServiceLock, ServiceLockError
from service.schedule import Scheduler, describe_seconds, parse_every

if TYPE_CHECKING:
    from cli.metrics import MetricsServer
    from yaml_reader import YamlPipelineExecutor

log = logging.getLogger("serve")

DASHBOARD_HOST = "127.0.0.1"  # this machine only, unless --dashboard-host says otherwise


def add_service_arguments(parser: argparse.ArgumentParser, *, every_required: bool = False) -> None:
    """The service's own options: ``--every`` and the dashboard's."""
    parser.add_argument("--every", type=_every, metavar="DURATION", required=every_required,
                        help="run the pipeline again and again, one run every DURATION (30s, 15m, 1h, 1d), "
                             "until Ctrl+C; the same as the serve subcommand")
    parser.add_argument("--dashboard-host", metavar="HOST",
                        help="the address the service's dashboard listens on (default 127.0.0.1: this machine only)")
    parser.add_argument("--dashboard-port", type=int, metavar="PORT",
                        help="the dashboard's port (default 8050, or a free one if that is taken; 0: a free one)")
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                        help="serve no dashboard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve``: the options of a run, and the service's (``--every`` required)."""
    from cli.app import add_run_arguments  # cli.app imports this module

    add_run_arguments(parser)
    add_service_arguments(parser, every_required=True)


def _every(text: str) -> float:
    try:
        return parse_every(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Serve until stopped: 0 when stopped between runs or after the run in progress, 130 if that run was
    interrupted, 2 if the service could not start (bad pipeline file, a port taken)."""
    from cli import app  # cli.app imports this module
    from cli.metrics import MetricsError, MetricsServer
    from cli.price_server import PriceServerError
    from engine import PipelineConfigError

    try:
        path, config, server = app.open_pipeline(args.pipeline)
    except (PipelineConfigError, PriceServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    metrics = dashboard = None
    lock = ServiceLock(Path(args.run_dir), config.name)
    try:
        lock.acquire()  # before anything listens: a second service of this pipeline is refused at once
        env = app.run_env(server)
        if args.metrics_port is not None:
            metrics = MetricsServer(args.metrics_host, args.metrics_port)
            metrics.start()
            print(f"metrics at http://{_netloc(args.metrics_host, metrics.port)}/metrics", file=sys.stderr, flush=True)
        live = LiveRun(config.name)
        if args.dashboard:
            dashboard = _start_dashboard(args, path, env, live)
        return _Service(args, path, config.name, env, live, metrics).serve()
    except (ServiceLockError, MetricsError, *_dashboard_errors()) as exc:  # a port taken: one line
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        for part in (dashboard, metrics, server):
            if part is not None:
                part.stop()
        lock.release()


class _Service:
    """The schedule, and what it does around each run: signals, history, metrics, the live view."""

    def __init__(self, args: argparse.Namespace, path: Path, name: str, env: dict[str, str] | None,
                 live: LiveRun, metrics: MetricsServer | None) -> None:
        self._args, self._path, self._env, self._live, self._metrics = args, path, env, live, metrics
        self._name = name  # the pipeline's, as last read: a run of a file that broke since is recorded under it
        self._scheduler = Scheduler(args.every, self._run_once, on_wait=self._waiting)
        self._signals = 0  # signals received; only the main thread runs handlers, so a plain int is enough
        self._run_handler: Callable[[int, FrameType | None], None] | None = None  # the run in progress's
        self._interrupted = False  # a run was interrupted by the user

    def serve(self) -> int:
        log.info("serving %s: one run every %s; Ctrl+C stops after the run in progress",
                 self._path, describe_seconds(self._args.every))
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            last = self._scheduler.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._live.stop()
        log.info("stopped after %d run(s)", self._scheduler.runs)
        # 130 only if the user's interrupt did cut the last run short (it may have ended by itself first).
        return EXIT_INTERRUPTED if self._interrupted and last == EXIT_INTERRUPTED else EXIT_OK

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            self._scheduler.stop()
            if self._run_handler is not None:
                # os.write: a print() here could meet the main thread inside a write to stderr.
                os.write(2, b"stopping: the run in progress finishes first; "
                            b"Ctrl+C again to interrupt it\n")
            return
        if self._run_handler is not None:
            self._interrupted = True
            self._run_handler(signum, frame)  # the run's own: gently, then fast, then at once

    def _run_once(self) -> int:
        from cli import app  # cli.app imports this module

        hooks = app.RunHooks(metrics=self._metrics, on_status=(self._live.update,),
                             on_start=self._started, on_end=self._ended)
        try:
            return app.run_pipeline(self._args, self._path, self._env, hooks)
        except Exception as exc:  # a bug in one run must not end the service: one line, and the next run
            log.debug("unexpected error", exc_info=True)
            log.error("the run failed: %s (run with --log-level DEBUG for details)", describe(exc))
            self._record(EXIT_STAGE_DIED, "died", 0.0)
            return EXIT_STAGE_DIED
        finally:
            self._run_handler = None

    def _started(self, executor: YamlPipelineExecutor) -> None:
        from cli.app import InterruptHandler  # cli.app imports this module

        self._name = executor.config.name
        self._live.begin(self._name, lambda: executor.run_path)
        self._run_handler = InterruptHandler(executor, None)
        for _ in range(self._signals - 1):  # interrupted while it was being set up
            self._interrupted = True
            self._run_handler(signal.SIGINT, None)

    def _ended(self, executor: YamlPipelineExecutor | None, report: RunReport | None, reason: str | None) -> None:
        if report is not None:
            self._record(report.exit_code, report.outcome, report.seconds)
            return
        # It could not start (the file broke since, the database is down): keep a record of it in the history.
        self._record(EXIT_CONFIG, NOT_STARTED, 0.0)
        run_dir = Path(self._args.run_dir)
        made = record_not_started(run_dir, self._name, self._path, reason or "")
        prune_runs(run_dir, self._args.keep_runs, protect=[made] if made else [])

    def _record(self, exit_code: int, outcome: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.record_run(outcome, exit_code, seconds, time.time())

    def _waiting(self, at: dt.datetime) -> None:
        self._live.wait(at)
        if self._metrics is not None:
            self._metrics.next_run(at.timestamp())


def record_not_started(run_dir: Path, name: str, path: Path, reason: str) -> Path | None:
    """Leave a run directory whose report.json says this run of ``name`` could not start, and why.

    None (logged) if it cannot be written: the history then misses it, the service goes on.
    """
    from engine.executor import reserve_run_dir  # the names the executor gives, so history lists it

    now = utc_now()
    report = {"outcome": NOT_STARTED, "exit_code": EXIT_CONFIG, "reason": reason, "seconds": 0.0,
              "started_at": now, "finished_at": now, "pipeline": {"name": name, "file": str(path)},
              "items": {"in": 0, "out": 0, "failed": 0, "no_data": 0, "lost": 0}, "failures": 0, "dead_letters": 0}
    try:
        run_path = reserve_run_dir(run_dir, name)
        (run_path / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    except Exception as exc:  # RunStartError or OSError: one line either way
        log.warning("cannot record the run that could not start: %s", describe(exc))
        return None
    return run_path


def _start_dashboard(args: argparse.Namespace, path: Path, env: dict[str, str] | None, live: LiveRun) -> Any:
    """The dashboard (the ``dashboard`` package, if installed), started, its URL printed; None without it.

    Raises the package's ``DashboardError`` (one line) when it cannot listen where it was asked to.
    """
    if importlib.util.find_spec("dashboard") is None:
        log.info("no dashboard: the dashboard package is not installed")
        return None
    dashboard = importlib.import_module("dashboard")
    app = dashboard.create_app(run_dir=Path(args.run_dir), store=_store_of(path, env), live=live)
    server = dashboard.start_dashboard(app, args.dashboard_host or DASHBOARD_HOST, args.dashboard_port)
    print(f"dashboard at {server.url}", file=sys.stderr, flush=True)
    return server


def _store_of(path: Path, env: dict[str, str] | None) -> Callable[[], Any]:
    """The price store the pipeline writes to, found when the dashboard asks (None if there is none)."""

    def store() -> Any:
        if importlib.util.find_spec("store") is None:
            return None
        from engine import PipelineConfigError, load_pipeline
        from store.target import store_for_pipeline

        try:
            config = load_pipeline(path, env)
        except PipelineConfigError:  # the file broke since the service started: the runs say so
            return None
        return store_for_pipeline(config)

    return store


def _dashboard_errors() -> tuple[type[Exception], ...]:
    """The dashboard package's error for "cannot listen there", if the package is installed."""
    return (importlib.import_module("dashboard").DashboardError,) if importlib.util.find_spec("dashboard") else ()


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
