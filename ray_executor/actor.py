"""The generic stage actor: one worker object per actor thread, one call per item (or batch).

It runs any class that follows the worker contract (:mod:`engine.contract`) unchanged.
Everything an item did comes back in the call's :class:`CallResult`, so the driver, which
alone counts, forwards and dead-letters, never depends on an actor staying alive: when
Ray re-executes a call after its process died, only the result of the execution that
finished reaches the driver.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.contract import ItemsFailed
from engine.stage import outputs_of
from engine.text import describe


@dataclass
class CallResult:
    """What one call did: outputs for the next stages, failed items, the workers' counter increments."""

    outputs: list[Any] = field(default_factory=list)
    failures: list[tuple[Any, str, str]] = field(default_factory=list)  # (item, error type, message)
    counters: dict[str, float] = field(default_factory=dict)  # added during this call only
    pid: int = 0  # the process that ran it: a new one means Ray restarted the actor
    build_error: str | None = None  # the worker could not be built; the items were not touched
    seconds: float = 0.0


class StageActor:
    """Holds one ``worker_class(**params)`` per actor thread, built on the thread's first item.

    Made a Ray actor by the executor (``ray.remote(StageActor).options(max_concurrency=...)``),
    so several calls run at once, each in its own thread with its own worker, as threads of a stage do.
    """

    def __init__(self, worker_class: type, params: Mapping[str, Any]) -> None:
        self._worker_class = worker_class
        self._params = dict(params)
        self._local = threading.local()
        self._workers: list[Any] = []  # every worker built, for close()
        self._lock = threading.Lock()  # guards _workers: actor threads build workers at the same time

    def run(self, items: list[Any], batch: bool) -> CallResult:
        """``process_batch(items)`` when ``batch``, else ``process(items[0])``."""
        result = CallResult(pid=os.getpid())
        try:
            worker = self._worker()
        except Exception as exc:  # as a thread that cannot build its worker: the items go to another call
            result.build_error = f"building {self._worker_class.__name__} failed: {describe(exc)}"
            return result
        before = _counters_of(worker)
        try:
            if batch:
                produced = outputs_of(worker.process_batch(items), "process_batch")
            else:
                produced = outputs_of(worker.process(items[0]), "process")
            result.outputs.extend(produced)
        except ItemsFailed as exc:
            _some_failed(exc, result)
        except Exception as exc:
            result.failures.extend(_failure(item, exc) for item in items)
        result.counters = _increments(before, _counters_of(worker))
        return result

    def close(self) -> CallResult:
        """Close every worker this actor built (the driver calls it once no call is in flight)."""
        result = CallResult(pid=os.getpid())
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            close = getattr(worker, "close", None)
            if close is None:
                continue
            before = _counters_of(worker)
            try:
                close()
            except ItemsFailed as exc:  # a writer flushing its buffer can still fail some rows
                _some_failed(exc, result)
            except Exception as exc:
                result.failures.append(_failure(None, RuntimeError(f"close() failed: {describe(exc)}")))
            for key, value in _increments(before, _counters_of(worker)).items():
                result.counters[key] = result.counters.get(key, 0) + value
        return result

    def _worker(self) -> Any:
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._worker_class(**self._params)
            self._local.worker = worker
            with self._lock:
                self._workers.append(worker)
        return worker


def _some_failed(exc: ItemsFailed, result: CallResult) -> None:
    result.outputs.extend(exc.outputs)
    result.failures.extend(_failure(item, error) for item, error in exc.failures)


def _failure(item: Any, error: BaseException) -> tuple[Any, str, str]:
    try:
        message = str(error) or repr(error)
    except Exception:  # a broken __str__ must not lose the item
        message = type(error).__name__
    return item, type(error).__name__, message


def _counters_of(worker: Any) -> dict[str, float]:
    """A copy of the worker's counters (its own thread is the one running here, so nothing changes them)."""
    try:
        return dict(getattr(worker, "counters", None) or {})
    except (TypeError, ValueError):  # not a mapping of counts: nothing to report
        return {}


def _increments(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    changed = {key: value - before.get(key, 0) for key, value in after.items()}
    return {key: value for key, value in changed.items() if value}
