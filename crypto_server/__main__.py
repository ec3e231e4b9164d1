"""Command line: ``python -m crypto_server [--host H] [--port P] [--sleep S] ...``."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .app import create_app
from .data import DataError, parse_day
from .load import load_dataset
from .process import serve_for_parent
from .server import SERVERS, ServerHandle, _bind, gevent_available, raise_open_file_limit
from .siblings import can_fork, default_processes, fork_siblings
from .synthetic import FIRST_DAY, LAST_DAY, MAX_ASSETS

_PROG = "crypto_server"


def _typed(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse type whose error says what was expected."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_seconds = _typed(float, lambda v: math.isfinite(v) and v >= 0, "a number of seconds >= 0")
_probability = _typed(float, lambda v: 0.0 <= v <= 1.0, "a probability between 0 and 1")
_count = _typed(int, lambda v: v >= 0, "an integer >= 0")
_port = _typed(int, lambda v: 0 <= v <= 65535, "a port number between 0 and 65535")
_assets = _typed(int, lambda v: 1 <= v <= MAX_ASSETS, f"a number of assets between 1 and {MAX_ASSETS}")
_day = _typed(parse_day, lambda v: True, "a date as YYYY-MM-DD")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {_PROG}",
        description="Serve mock crypto prices (the PyCon 2020 tutorial API) with optional latency and faults.",
        epilog="Endpoints: /exchanges /symbols /days /price/<exchange>/<symbol>/<YYYY-MM-DD> "
        "/wiki/List_of_cryptocurrencies /quote/<symbol> and / (an index page).",
    )
    net = parser.add_argument_group("listening")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    net.add_argument(
        "--port", type=_port, default=5000, help="port to listen on, 0 for any free one (default: %(default)s)"
    )
    net.add_argument(
        "--server",
        choices=SERVERS,
        help="the WSGI server: gevent (a greenlet per connection, keep-alive; thousands of concurrent "
        "requests) or werkzeug (a thread per connection, one request per connection) "
        "(default: gevent if it is installed, else werkzeug)",
    )

    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir",
        metavar="DIR",
        help="serve Cryptowatch CSV exports from DIR (files <exchange>_<symbol>.csv with columns "
        "CloseTime,OpenPrice,HighPrice,LowPrice,ClosePrice,Volume,VolumeUSD,DateTime) "
        "instead of synthetic data",
    )
    data.add_argument(
        "--assets",
        type=_assets,
        metavar="N",
        help="number of synthetic assets: real ones first, made-up ones past the list (default: 100)",
    )
    data.add_argument(
        "--first-day", type=_day, metavar="YYYY-MM-DD", help=f"first day of synthetic data (default: {FIRST_DAY})"
    )
    data.add_argument(
        "--last-day", type=_day, metavar="YYYY-MM-DD", help=f"last day of synthetic data (default: {LAST_DAY})"
    )
    data.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the synthetic prices and of the random fault choices (default: %(default)s)",
    )

    faults = parser.add_argument_group("slow and faulty network")
    faults.add_argument(
        "--sleep", type=_seconds, default=0.0, metavar="SECONDS", help="fixed latency added to every request"
    )
    faults.add_argument(
        "--jitter", type=_seconds, default=0.0, metavar="SECONDS", help="extra latency, uniform between 0 and SECONDS"
    )
    faults.add_argument(
        "--error-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="answer a fraction P of requests with 500 or 503",
    )
    faults.add_argument(
        "--rate-limit",
        type=_count,
        metavar="N",
        help="answer 429 with Retry-After to requests beyond N in any one second (default: no limit)",
    )

    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="serving processes sharing the port, counters and rate limit (gevent only; default: one per "
        "core, at most 2, where fork exists, else 1)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log one line per request (debug level)")
    parser.add_argument(
        "--child",
        action="store_true",
        help="run as another program's child process (see crypto_server.start_server_process): write "
        '{"url": ...} as one JSON line on stdout once listening, answer the commands stats and reset '
        "read from stdin, and stop when stdin closes",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until interrupted; returns the exit status (1: cannot listen, 2: bad data or gevent missing)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        clashing = [f for f in ("assets", "first_day", "last_day") if getattr(args, f) is not None]
        if clashing:
            parser.error(f"--{clashing[0].replace('_', '-')} applies to synthetic data, not to --data-dir")
    try:
        if args.data_dir is not None:
            dataset = load_dataset(args.data_dir)
        else:
            dataset = load_dataset(
                seed=args.seed,
                assets=args.assets or 100,
                first_day=args.first_day,
                last_day=args.last_day,
            )
    except (DataError, ValueError) as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2

    if args.server is None:
        args.server = "gevent" if gevent_available() else "werkzeug"
        if args.server == "werkzeug":
            print(f"{_PROG}: gevent is not installed: serving with werkzeug, a thread per connection", file=sys.stderr)
    elif args.server == "gevent" and not gevent_available():
        print(f"{_PROG}: --server gevent: gevent is not installed (pip install gevent)", file=sys.stderr)
        return 2
    if args.processes is None:
        args.processes = default_processes() if args.server == "gevent" else 1
    elif args.processes < 1 or (args.processes > 1 and (args.server != "gevent" or not can_fork())):
        parser.error("--processes must be 1, or more with the gevent server on Linux")
    app = create_app(
        dataset,
        sleep=args.sleep,
        jitter=args.jitter,
        error_rate=args.error_rate,
        rate_limit=args.rate_limit,
        seed=args.seed,
    )
    raise_open_file_limit()  # a descriptor per connection: this process is the server alone
    try:
        server = _bind(app, args.host, args.port, args.server, reuse_port=args.processes > 1)
    except OSError as exc:
        print(f"{_PROG}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    def bind() -> Any:
        return _bind(app, server.host, server.port, args.server, reuse_port=True)

    siblings = fork_siblings(app, server, bind, args.processes - 1)  # before this process starts a thread
    try:
        return _serve(args, app, server, siblings.cpu_seconds)
    finally:
        siblings.stop()


def _serve(args: argparse.Namespace, app: Any, server: Any, siblings_cpu: Callable[[], float]) -> int:
    dataset = app.dataset
    if args.child:
        serve_for_parent(
            ServerHandle(app, server), cpu_seconds=lambda: time.process_time() + siblings_cpu()
        )  # type: ignore[arg-type]
        return 0
    host = f"[{server.host}]" if ":" in server.host else server.host
    print(
        f"{_PROG}: serving {len(dataset.symbols)} assets on {len(dataset.exchanges)} exchanges, "
        f"{dataset.days.first}..{dataset.days.last}, at http://{host}:{server.port} "
        f"({args.server}, {args.processes} process{'es' if args.processes > 1 else ''}; Ctrl+C to stop)",
        flush=True,
    )
    # Served from a thread, so Ctrl+C reaches this one, never stuck in a C event loop (gevent's).
    handle = ServerHandle(app, server)  # type: ignore[arg-type]
    try:
        while handle.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
