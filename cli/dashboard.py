"""``python main.py dashboard``: the web UI alone, over a run directory and the pipeline's price store.

It runs no pipeline: the Now page shows a run another process is making in the same run
directory (``python main.py`` in another terminal), read from its timeline.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

from dashboard import DEFAULT_PORT, DashboardError, create_app, start_dashboard
from engine import PipelineConfigError, load_pipeline
from engine.report import EXIT_CONFIG, EXIT_OK
from engine.text import describe
from store.target import PriceStore, pipeline_path, store_for_pipeline

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline", metavar="PATH",
                        help="the pipeline whose stored prices to show (default: $PIPELINE_LOCATION)")
    parser.add_argument("--run-dir", default="runs", metavar="DIR", help="the runs to show (default: runs/)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default 127.0.0.1: this machine only; "
                             "0.0.0.0 shows the dashboard to the network, without any login)")
    parser.add_argument("--port", type=_port, default=None,
                        help=f"the port to listen on (default {DEFAULT_PORT}, or a free one if that is taken; "
                             "0: a free one)")


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard until Ctrl+C or SIGTERM (exit 0); exit 2 in one line when it cannot start."""
    try:
        store = _LazyStore(args.pipeline)
        app = create_app(run_dir=args.run_dir, store=store)
        server = start_dashboard(app, args.host, args.port)
    except (PipelineConfigError, DashboardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        print(f"dashboard: {server.url} (runs in {Path(args.run_dir)}; Ctrl+C stops it)", flush=True)
        try:
            store()  # start the embedded database now rather than on the first visit to Prices
        except Exception:  # logged in one line; the Prices page says it and asks again
            pass
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("dashboard stopped", file=sys.stderr)
        return EXIT_OK
    finally:
        server.stop()


class _LazyStore:
    """The pipeline's price store, found on first use and remembered; asked again after a failure
    (the database may come up later), each failure logged once in one line.

    The pipeline file is read at once, so a wrong ``--pipeline`` stops the command before it serves.
    """

    def __init__(self, pipeline: str | None) -> None:
        self._config = load_pipeline(pipeline_path(pipeline))
        self._store: PriceStore | None = None
        self._last_error = ""
        self._lock = threading.Lock()  # request threads share one lookup (it may start the embedded database)

    def __call__(self) -> PriceStore | None:
        with self._lock:
            if self._store is None:
                try:
                    self._store = store_for_pipeline(self._config)
                except Exception as exc:
                    if describe(exc) != self._last_error:
                        self._last_error = describe(exc)
                        log.warning("prices cannot be shown: %s", self._last_error)
                    raise
            return self._store


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, not {text!r}")
    return port
