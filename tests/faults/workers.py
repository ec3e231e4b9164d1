"""Test-only workers for fault injection. Pipelines name them as ``location: tests.faults.workers``.

They wrap or stand in for the shipped workers so that a fault can be placed
exactly: a fetcher that raises on chosen items, one whose threads die or
cannot be built, a planner slow to start or that notes when it starts each
item, a writer that dies. Everything else about them is the real worker.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from workers.postgres_worker import PostgresWorker
from workers.price_worker import PriceWorker
from workers.records import PriceRecord, PriceTask
from workers.task_planner import TaskPlanner

# Signals between a test and its workers, by a name the test makes up.
GATES: dict[str, threading.Event] = {}
# Each RecordingPlanner notes when it starts on a symbol, under its ``log_name``.
STARTED: dict[str, list[tuple[float, str]]] = {}
_LOCK = threading.Lock()


def gate(name: str) -> threading.Event:
    """The event called ``name`` (made on first use)."""
    with _LOCK:
        return GATES.setdefault(name, threading.Event())


def task_key(task: PriceTask | Mapping[str, Any]) -> str:
    """``symbol/exchange/date`` of a task, stable across processes (for picking items to fail)."""
    if isinstance(task, PriceTask):
        return f"{task.symbol.lower()}/{task.exchange}/{task.date}"
    return f"{str(task['symbol']).lower()}/{task['exchange']}/{task['date']}"


def picked(task: PriceTask | Mapping[str, Any], one_in: int, salt: str = "") -> bool:
    """Whether ``task`` is one of the deterministically chosen ~1/``one_in`` of all tasks."""
    return one_in > 0 and zlib.crc32(f"{salt}{task_key(task)}".encode()) % one_in == 0


class FlakyPriceWorker(PriceWorker):
    """A real PriceWorker that raises ``RuntimeError`` on chosen tasks before fetching them.

    ``fail_one_in``: fail about one task in that many (chosen by a hash of the
    task, so the choice is the same in every thread and every run); ``fail_symbols``:
    fail every task of these symbols. Other params are PriceWorker's.
    """

    def __init__(self, *, fail_one_in: int = 0, fail_symbols: list[str] = (), salt: str = "", **params: Any) -> None:
        super().__init__(**params)
        self._one_in = fail_one_in
        self._symbols = {s.lower() for s in fail_symbols}
        self._salt = salt

    def process(self, item: Any) -> Iterator[PriceRecord]:
        if isinstance(item, (PriceTask, Mapping)) and (
            picked(item, self._one_in, self._salt) or task_key(item).split("/")[0] in self._symbols
        ):
            raise RuntimeError(f"injected failure on {task_key(item)}")
        yield from super().process(item)


class DyingPriceWorker(PriceWorker):
    """A PriceWorker whose thread dies (``SystemExit``, not a per-item failure) on every item."""

    def process(self, item: Any) -> Iterator[PriceRecord]:
        raise SystemExit(f"price thread gave up on {item!r}")


class UnbuildablePriceWorker(PriceWorker):
    """A PriceWorker that passes the stage check but whose threads all fail in ``__init__``.

    As if a resource the workers need went away between the check and the start.
    """

    @classmethod
    def prepare_stage(cls, params: Mapping[str, Any]) -> None:
        check = getattr(PriceWorker, "prepare_stage", None)
        if check is not None:
            check(params)

    def __init__(self, **params: Any) -> None:
        raise RuntimeError("cannot build a PriceWorker")


class SlowStartPlanner(TaskPlanner):
    """A TaskPlanner whose stage check takes ``prepare_delay`` seconds (a slow service to reach).

    While it waits, ``gate(gate_name)`` is set, so a test knows the run is starting.
    """

    @classmethod
    def prepare_stage(cls, params: Mapping[str, Any]) -> None:
        gate(params["gate_name"]).set()
        time.sleep(params["prepare_delay"])
        check = getattr(TaskPlanner, "prepare_stage", None)
        if check is not None:
            check({k: v for k, v in params.items() if k not in ("gate_name", "prepare_delay")})

    def __init__(self, *, gate_name: str, prepare_delay: float, **params: Any) -> None:
        super().__init__(**params)


class SignallingFlakyPriceWorker(FlakyPriceWorker):
    """A FlakyPriceWorker that sets ``gate(gate_name)`` when it takes its first item (the run is under way)."""

    def __init__(self, *, gate_name: str, **params: Any) -> None:
        super().__init__(**params)
        self._gate = gate(gate_name)

    def process(self, item: Any) -> Iterator[PriceRecord]:
        self._gate.set()
        yield from super().process(item)


class DyingWriter(PostgresWorker):
    """A PostgresWorker whose thread dies (``SystemExit``) on each batch after its first ``good_batches``."""

    def __init__(self, *, good_batches: int = 1, **params: Any) -> None:
        super().__init__(**params)
        self._good = good_batches

    def process_batch(self, items: Any) -> None:
        if self._good <= 0:
            raise SystemExit("writer thread gave up")
        self._good -= 1
        super().process_batch(items)


class SlowWriter(PostgresWorker):
    """A PostgresWorker that takes ``batch_delay`` seconds more per batch (a slow database), so rows queue up."""

    def __init__(self, *, batch_delay: float, **params: Any) -> None:
        super().__init__(**params)
        self._delay = batch_delay

    def process_batch(self, items: Any) -> None:
        time.sleep(self._delay)
        super().process_batch(items)


class RecordingPlanner(TaskPlanner):
    """A TaskPlanner that records ``(time.monotonic(), symbol)`` in ``STARTED[log_name]`` as it starts each symbol."""

    def __init__(self, *, log_name: str, **params: Any) -> None:
        super().__init__(**params)
        with _LOCK:
            self._log = STARTED.setdefault(log_name, [])

    def process(self, item: str) -> Iterator[PriceTask]:
        with _LOCK:
            self._log.append((time.monotonic(), item))
        yield from super().process(item)
