"""Fault-injection helpers: a price pipeline of real workers, servers to break, and the invariant.

The invariant every fault test checks (:func:`check_accounting`): every task is
accounted for exactly once, as a stored row (with the right price), a
``no_data`` count, or a dead-letter entry with its reason; ``prices`` holds no
duplicate key and no row that was not asked for.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

import crypto_server
from engine.dead_letter import read_dead_letters
from engine.report import RunReport
from tests.fixtures.price_server import PRICE_SERVER_SEED
from yaml_reader import YamlPipelineExecutor

REPO = Path(__file__).resolve().parents[2]
FAULT_WORKERS = "tests.faults.workers"

# Fast, bounded client retries: a fault test must end in seconds, not minutes.
FAST_HTTP = {"retries": 6, "backoff": 0.01, "backoff_max": 0.05, "connect_timeout": 2, "read_timeout": 5}

EXCHANGES = ["bitstamp", "coinbase-pro", "kraken"]

Key = tuple[str, str, str]  # (lower-case symbol, exchange, YYYY-MM-DD)


# --- servers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dataset() -> crypto_server.Dataset:
    """The synthetic dataset every fault server answers from (built once per process)."""
    return crypto_server.load_dataset(seed=PRICE_SERVER_SEED)


@pytest.fixture
def fault_server(
    start_price_server: Callable[..., crypto_server.ServerHandle], dataset: crypto_server.Dataset
) -> Callable[..., crypto_server.ServerHandle]:
    """``fault_server(sleep=, jitter=, error_rate=, rate_limit=, seed=)``: a crypto_server on a free port.

    It answers from :func:`dataset`; every server started is stopped at the end of the test.
    """

    def start(**options: Any) -> crypto_server.ServerHandle:
        options.setdefault("dataset", dataset)
        return start_price_server(port=0, **options)

    return start


# --- tasks and pipelines -----------------------------------------------------------------


def days(start: str, end: str) -> list[str]:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def plan(symbols: Sequence[str], exchanges: Sequence[str], start: str, end: str) -> list[Key]:
    """Every task the TaskPlanner makes of these symbols, as keys."""
    return [(s.lower(), e, d) for s in symbols for d in days(start, end) for e in exchanges]


def price_pipeline(
    *,
    server_url: str,
    database_url: str,
    symbols: Sequence[str],
    start: str,
    end: str,
    exchanges: Sequence[str] = EXCHANGES,
    fetchers: int = 4,
    fetcher: str = "workers.price_worker:PriceWorker",
    fetcher_params: dict[str, Any] | None = None,
    http: dict[str, Any] | None = None,
    task_queue: int = 50,
    record_queue: int = 200,
    writers: int = 2,
    batch_size: int = 20,
    batch_timeout: float = 0.1,
    retry_seconds: float = 5,
    max_restarts: int = 3,
) -> dict[str, Any]:
    """Planner (symbols -> tasks) -> PriceWorker pool -> PostgresWorker, as a pipeline document."""
    location, _, cls = fetcher.partition(":")
    return {
        "name": "faults",
        "monitor_interval": 0.2,
        "queues": [
            {"name": "Tasks", "maxsize": task_queue},
            {"name": "Records", "maxsize": record_queue},
        ],
        "workers": [
            {
                "name": "Planner", "location": "workers.task_planner", "class": "TaskPlanner",
                "input_values": list(symbols), "output_queues": ["Tasks"],
                "params": {"start": start, "end": end, "exchanges": list(exchanges), "base_url": server_url},
            },
            {
                "name": "PriceWorker", "location": location, "class": cls, "instances": fetchers,
                "input_queue": "Tasks", "output_queues": ["Records"], "max_restarts": max_restarts,
                "params": {"base_url": server_url, "http": dict(http or FAST_HTTP), **(fetcher_params or {})},
            },
            {
                "name": "Writer", "location": "workers.postgres_worker", "class": "PostgresWorker",
                "instances": writers, "input_queue": "Records", "batch_size": batch_size,
                "batch_timeout": batch_timeout,
                "params": {"database_url": database_url, "batch_size": batch_size, "retry_seconds": retry_seconds},
            },
        ],
    }


def write_pipeline(directory: Path, document: dict[str, Any]) -> Path:
    path = directory / f"pipeline-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def make_executor(tmp_path: Path) -> Callable[..., YamlPipelineExecutor]:
    """``make_executor(document, **options)``: an executor writing its dead letters to a fresh file."""

    def make(document: dict[str, Any], **options: Any) -> YamlPipelineExecutor:
        options.setdefault("run_dir", tmp_path / "runs")
        options.setdefault("dead_letter", tmp_path / f"dead-{uuid.uuid4().hex[:8]}.jsonl")
        options.setdefault("on_status", lambda statuses: None)
        return YamlPipelineExecutor(write_pipeline(tmp_path, document), **options)

    return make


@pytest.fixture
def run_pipeline(make_executor: Callable[..., YamlPipelineExecutor]) -> Callable[..., RunReport]:
    def run(document: dict[str, Any], **options: Any) -> RunReport:
        return make_executor(document, **options).run()

    return run


# --- the database ------------------------------------------------------------------------


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("prices"):
                return []
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def count_rows(database_url: str) -> int:
    rows = query(database_url, "SELECT count(*) FROM prices")
    return rows[0][0] if rows else 0


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


class Watcher(threading.Thread):
    """Runs ``action`` once ``condition`` holds (polled), unless told to ``cancel()`` first.

    Any exception is kept in ``error`` and re-raised by :meth:`finish`, so a fault that
    could not be injected fails the test instead of passing silently.
    """

    def __init__(self, condition: Callable[[], bool], action: Callable[[], None], timeout: float = 30) -> None:
        super().__init__(name="fault-watcher", daemon=True)
        self.condition, self.action, self.timeout = condition, action, timeout
        self.fired = threading.Event()
        self.error: BaseException | None = None
        self._cancel = threading.Event()

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.timeout
            while not self._cancel.is_set() and time.monotonic() < deadline:
                if self.condition():
                    self.action()
                    self.fired.set()
                    return
                time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - handed to the test by finish()
            self.error = exc

    def cancel(self) -> None:
        self._cancel.set()

    def finish(self, timeout: float = 60) -> None:
        self.cancel()
        self.join(timeout)
        if self.error is not None:
            raise self.error


# --- the invariant -----------------------------------------------------------------------


@dataclass
class Accounting:
    """Where every task went. Built and checked by :func:`check_accounting`."""

    tasks: list[Key]
    stored: set[Key]
    no_data: int
    entries: list[dict[str, Any]]
    dead: dict[Key, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def dead_tasks(self) -> int:
        return sum(1 for key in self.tasks if self.dead.get(key))

    def kinds(self) -> Counter[str]:
        return Counter(e["kind"] for e in self.entries)

    def messages(self, key: Key) -> list[str]:
        return [e["message"] for e in self.dead.get(key, [])]


def _covered(entry: dict[str, Any], tasks: Sequence[Key]) -> list[Key]:
    """The task keys a dead-letter entry stands for (a lost symbol stands for all its tasks)."""
    item = entry["item"]
    if isinstance(item, str):
        return [key for key in tasks if key[0] == item.lower()]
    if isinstance(item, dict) and {"symbol", "exchange", "date"} <= item.keys():
        return [(str(item["symbol"]).lower(), item["exchange"], item["date"])]
    if isinstance(item, dict) and {"symbol", "exchange", "price_date"} <= item.keys():
        return [(str(item["symbol"]).lower(), item["exchange"], item["price_date"])]
    return []


def check_accounting(
    report: RunReport | None,
    *,
    tasks: Sequence[Key],
    dataset: crypto_server.Dataset,
    database_url: str,
    fetch_stage: str = "PriceWorker",
    entries: list[dict[str, Any]] | None = None,
    no_data: int | None = None,
) -> Accounting:
    """Assert the invariant for one run and return where everything went.

    The pipeline is a chain (each stage feeds the next in ``report.stages`` order).

    ``entries`` and ``no_data`` default to the report's dead-letter file and the
    fetch stage's ``no_data`` counter (a subprocess test passes what it read).
    """
    problems: list[str] = []
    duplicates = query(
        database_url,
        "SELECT symbol, exchange, price_date, count(*) FROM prices "
        "GROUP BY symbol, exchange, price_date HAVING count(*) > 1",
    )
    if duplicates:
        problems.append(f"duplicate rows: {duplicates[:5]}")
    rows = {
        (symbol.lower(), exchange, day.isoformat()): close
        for symbol, exchange, day, close in query(database_url, "SELECT symbol, exchange, price_date, close FROM prices")
    }
    if entries is None:
        assert report is not None
        entries = read_dead_letters(report.dead_letter_path)
        if len(entries) != report.dead_letters:
            problems.append(f"report counts {report.dead_letters} dead letters, the file has {len(entries)}")
        counted = sum(s.failed + s.lost for s in report.stages)
        if counted != len(entries):
            problems.append(f"stages count {counted} failed+lost items, the dead-letter file has {len(entries)}")
    if report is not None:
        # Along the chain, every output of a stage was taken by the next one or lost on the way.
        for upstream, downstream in zip(report.stages, report.stages[1:]):
            if downstream.items_in + downstream.lost != upstream.items_out:
                problems.append(
                    f"{upstream.name} put out {upstream.items_out} items, but {downstream.name} took "
                    f"{downstream.items_in} and lost {downstream.lost}"
                )
    if no_data is None:
        assert report is not None
        no_data = report.stage(fetch_stage).counters.get("no_data", 0)

    task_set = set(tasks)
    if len(task_set) != len(tasks):
        problems.append("the test planned the same task twice")
    dead: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        covered = _covered(entry, tasks)
        if not covered or not set(covered) <= task_set:
            problems.append(f"dead-letter entry for no planned task: {entry}")
        if entry.get("kind") not in ("failed", "lost", "interrupted"):
            problems.append(f"dead-letter entry of unknown kind: {entry}")
        if not entry.get("message") or not entry.get("error_type") or not entry.get("stage"):
            problems.append(f"dead-letter entry without its reason: {entry}")
        for key in covered:
            dead[key].append(entry)

    for key in rows:
        if key not in task_set:
            problems.append(f"row for a task nobody asked for: {key}")
    expected_no_data = 0
    for key in tasks:
        symbol, exchange, day = key
        price = dataset.price(exchange, symbol, day)
        ways = (key in rows) + len(dead.get(key, []))
        if price is None:
            if key in rows:
                problems.append(f"{key}: stored, but the server has no price that day")
            if len(dead.get(key, [])) > 1:
                problems.append(f"{key}: dead-lettered {len(dead[key])} times: {dead[key]}")
            if not dead.get(key):
                expected_no_data += 1
        elif ways != 1:
            where = (["stored"] if key in rows else []) + [f"dead-letter {e['stage']}/{e['kind']}" for e in dead.get(key, [])]
            problems.append(f"{key}: accounted for {ways} times ({', '.join(where) or 'nowhere'})")
        elif key in rows and rows[key] != price["close"]:
            problems.append(f"{key}: stored close {rows[key]}, the server said {price['close']}")
    if no_data != expected_no_data:
        problems.append(
            f"no_data counted {no_data} times, but {expected_no_data} tasks without a price were not dead-lettered"
        )
    assert not problems, f"{len(problems)} accounting problem(s):\n" + "\n".join(problems[:30])
    return Accounting(tasks=list(tasks), stored=set(rows), no_data=no_data, entries=entries, dead=dict(dead))


def priced(tasks: Sequence[Key], dataset: crypto_server.Dataset) -> list[Key]:
    """The tasks the server has a price for."""
    return [key for key in tasks if dataset.price(key[1], key[0], key[2]) is not None]
