"""Small workers for engine tests. Pipelines name them as ``location: tests.engine.workers``."""

from __future__ import annotations

import builtins
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from typing import Any

from engine import ItemsFailed

# Test-only registries: sinks record what reached them, keyed per test.
_LOCK = threading.Lock()
_COLLECTED: dict[str, list[Any]] = defaultdict(list)
_EVENTS: dict[str, Counter[str]] = defaultdict(Counter)


def collected(key: str) -> list[Any]:
    with _LOCK:
        return list(_COLLECTED[key])


def events(key: str) -> Counter[str]:
    with _LOCK:
        return Counter(_EVENTS[key])


def _event(key: str, name: str) -> None:
    with _LOCK:
        _EVENTS[key][name] += 1


class Range:
    """Source: an item ``[start, stop]`` yields every integer in that range."""

    def __init__(self, tag: str = "") -> None:
        self.tag = tag

    def process(self, item: list[int]) -> Any:
        start, stop = item
        for number in range(start, stop):
            yield f"{self.tag}{number}" if self.tag else number


class Paced:
    """Source: an item ``[start, stop]`` yields every integer in that range, one each ``every`` seconds."""

    def __init__(self, every: float) -> None:
        self.every = every

    def process(self, item: list[int]) -> Any:
        for number in range(*item):
            time.sleep(self.every)
            yield number


class Echo:
    """Passes items on, optionally after a random delay of up to ``max_delay`` seconds."""

    def __init__(self, max_delay: float = 0.0, seed: int | None = None, key: str = "") -> None:
        self.max_delay = max_delay
        self.random = random.Random(seed)
        self.key = key
        if key:
            _event(key, "init")

    def process(self, item: Any) -> Any:
        if self.max_delay:
            time.sleep(self.random.random() * self.max_delay)
        return [item]

    def close(self) -> None:
        if self.key:
            _event(self.key, "close")


class Collect:
    """Sink: records every item under ``key``."""

    def __init__(self, key: str, max_delay: float = 0.0) -> None:
        self.key = key
        self.max_delay = max_delay

    def process(self, item: Any) -> None:
        if self.max_delay:
            time.sleep(random.random() * self.max_delay)
        with _LOCK:
            _COLLECTED[self.key].append(item)


class BatchCollect:
    """Batch sink: records each batch's items; fails the items listed in ``bad`` alone."""

    def __init__(self, key: str, bad: list[Any] = ()) -> None:
        self.key = key
        self.bad = set(bad)
        _event(key, "init")

    def process_batch(self, items: list[Any]) -> None:
        _event(self.key, "batch")
        good = [i for i in items if i not in self.bad]
        with _LOCK:
            _COLLECTED[self.key].extend(good)
        failures = [(i, ValueError(f"bad value {i}")) for i in items if i in self.bad]
        if failures:
            raise ItemsFailed(failures)

    def close(self) -> None:
        _event(self.key, "close")


class BufferedCollect:
    """Sink that buffers items and only stores them in close(), like a writer flushing on shutdown."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.buffer: list[Any] = []

    def process(self, item: Any) -> None:
        self.buffer.append(item)

    def close(self) -> None:
        with _LOCK:
            _COLLECTED[self.key].extend(self.buffer)


class FailSome:
    """Raises ValueError on every item divisible by ``every``; passes the others on."""

    def __init__(self, every: int, key: str = "") -> None:
        self.every = every
        self.key = key

    def process(self, item: int) -> Any:
        if item % self.every == 0:
            raise ValueError(f"{item} is divisible by {self.every}")
        yield item

    def close(self) -> None:
        if self.key:
            _event(self.key, "close")


class Die:
    """Kills its thread on every item (an exception the engine does not catch per item)."""

    def __init__(self, key: str = "") -> None:
        self.key = key
        if key:
            _event(key, "init")

    def process(self, item: Any) -> Any:
        raise SystemExit(f"worker gave up on {item}")

    def close(self) -> None:
        if self.key:
            _event(self.key, "close")


class DieOnce:
    """Kills its thread on the first item it sees in its first life (tracked under ``key``); fine afterwards."""

    def __init__(self, key: str) -> None:
        self.key = key

    def process(self, item: Any) -> Any:
        with _LOCK:
            first = _EVENTS[self.key]["died"] == 0
            if first:
                _EVENTS[self.key]["died"] += 1
        if first:
            raise SystemExit("first life ends here")
        return [item]


class BrokenInit:
    """Cannot even be built."""

    def __init__(self) -> None:
        raise RuntimeError("cannot connect to anything")

    def process(self, item: Any) -> None:  # pragma: no cover - never reached
        return None


class Slow:
    """Sleeps ``delay`` seconds per item, watching ``key`` events; a stand-in for network I/O."""

    def __init__(self, delay: float, key: str = "") -> None:
        self.delay = delay
        self.key = key

    def process(self, item: Any) -> Any:
        if self.key:
            _event(self.key, "started")
        time.sleep(self.delay)
        return [item]


class Counting:
    """Passes items on and counts odd ones in ``counters`` (outcomes that are not outputs)."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    def process(self, item: int) -> Any:
        if item % 2:
            self.counters["odd"] += 1
            return None
        return [item]


class NotAWorker:
    """Has neither process nor process_batch."""


class OnlyBatch:
    def process_batch(self, items: list[Any]) -> None:
        return None


class NeedsParam:
    def __init__(self, exchanges: list[str]) -> None:
        self.exchanges = exchanges

    def process(self, item: Any) -> Any:
        return [item]


class Gate:
    """Holds every item until ``key``'s sink has collected ``wait_for`` items, then waits ``linger`` more.

    Makes "this producer finishes after that one" certain instead of likely.
    """

    def __init__(self, key: str, wait_for: int, linger: float = 0.2, timeout: float = 20.0) -> None:
        self.key = key
        self.wait_for = wait_for
        self.linger = linger
        self.timeout = timeout
        self.opened = False

    def process(self, item: Any) -> Any:
        if not self.opened:
            deadline = time.monotonic() + self.timeout
            while len(collected(self.key)) < self.wait_for:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the sink never collected {self.wait_for} items")
                time.sleep(0.005)
            time.sleep(self.linger)
            self.opened = True
        return [item]


class Unreachable:
    """Its stage cannot start: prepare_stage says why."""

    @classmethod
    def prepare_stage(cls, params: dict[str, Any]) -> None:
        _event(params["key"], "prepared")
        raise ConnectionError("cannot reach db.example:\n connection refused")

    def __init__(self, key: str) -> None:  # pragma: no cover - never built
        _event(key, "init")

    def process(self, item: Any) -> None:  # pragma: no cover
        return None


class WhoDoesIt:
    """Sleeps ``delay`` per item and records which thread did it, under ``key``."""

    def __init__(self, key: str, delay: float) -> None:
        self.key = key
        self.delay = delay

    def process(self, item: Any) -> Any:
        time.sleep(self.delay)
        _event(self.key, threading.current_thread().name)
        return [item]


class BufferedRefusing:
    """Buffers items and, every ``every`` items and in close(), refuses the whole buffer."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.buffer: list[Any] = []

    def process(self, item: Any) -> None:
        self.buffer.append(item)
        if len(self.buffer) >= self.every:
            self.close()

    def close(self) -> None:
        items, self.buffer = self.buffer, []
        if items:
            raise ItemsFailed([(i, ValueError(f"refused {i}")) for i in items])


class Huge:
    """Source: each item ``n`` becomes a string of ``n`` characters (a 10 MB page cell, say)."""

    def process(self, item: int) -> Any:
        yield "x" * (item - 1) + "!"


class FailHuge:
    """Fails every item with a message holding the whole item, and logs it whole first, as a chatty library might."""

    def process(self, item: Any) -> Any:
        logging.getLogger("chatty.library").warning("giving up on %s", item)
        raise ValueError(f"cannot handle {item}\nsecond line")


class DieOn:
    """Passes items on; sleeps ``slow`` seconds on ``"slow"``; kills its thread on ``"die"``."""

    def __init__(self, slow: float = 0.3) -> None:
        self.slow = slow

    def process(self, item: str) -> Any:
        if item == "slow":
            time.sleep(self.slow)
        if item == "die":
            raise SystemExit("died on its item")
        return [item]


class BadManners:
    """Passes items on, but its ``counters`` are not counts and its ``close()`` calls sys.exit."""

    def __init__(self) -> None:
        self.counters = 5

    def process(self, item: Any) -> Any:
        return [item]

    def close(self) -> None:
        raise SystemExit("bye")


class ReturnsValue:
    """A worker with a bug: ``process`` returns its result instead of yielding it, so every item fails.

    ``as_`` picks what it returns: ``float`` (not iterable), ``str``, ``dict`` or ``zero`` (falsy).
    """

    def __init__(self, as_: str = "float") -> None:
        self.convert = {"float": float, "str": str, "dict": lambda item: {"value": item}, "zero": lambda item: 0}[as_]

    def process(self, item: Any) -> Any:
        return self.convert(item)


class FailByKind:
    """Raises the builtin exception named in ``kinds`` on items divisible by its number (first match wins)."""

    def __init__(self, kinds: dict[str, int]) -> None:
        self.kinds = [(getattr(builtins, name), every) for name, every in kinds.items()]

    def process(self, item: int) -> Any:
        for kind, every in self.kinds:
            if item % every == 0:
                raise kind(f"{item} is divisible by {every}")
        return [item]


class Sort:
    """Fails multiples of 7, counts multiples of 5 as ``no_data``, passes the rest on after ``delay`` seconds
    (with ``every_item``, every item takes ``delay``)."""

    def __init__(self, delay: float = 0.0, every_item: bool = False) -> None:
        self.delay = delay
        self.every_item = every_item
        self.counters: Counter[str] = Counter()

    def process(self, item: int) -> Any:
        if self.every_item:
            time.sleep(self.delay)
        if item % 7 == 0:
            raise ValueError(f"{item} is a multiple of 7")
        if item % 5 == 0:
            self.counters["no_data"] += 1
            return None
        if not self.every_item:
            time.sleep(self.delay)
        return [item]


class FailsFirstBuild:
    """Sink whose first construction under ``key`` raises (a service not up yet); later ones work."""

    def __init__(self, key: str) -> None:
        self.key = key
        with _LOCK:
            _EVENTS[key]["init"] += 1
            first = _EVENTS[key]["init"] == 1
        if first:
            raise RuntimeError("the service is not up yet")

    def process(self, item: Any) -> None:
        with _LOCK:
            _COLLECTED[self.key].append(item)
