"""A ``queue.Queue`` that can also move several items under one lock acquisition.

Taking the queue's lock costs more than passing a cheap item along, so the
stages move items in chunks when they can. Everything else (``qsize``,
``put``, ``get``, bounded size) is plain ``queue.Queue``, built on the same
mutex and conditions, so both kinds of call may be mixed freely.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from typing import Any


class Channel(queue.Queue):
    """A bounded FIFO queue with ``put_many`` and ``get_many``."""

    def put_many(self, items: Sequence[Any], start: int = 0, timeout: float = 0.0) -> int:
        """Put ``items[start:]`` as far as there is room, waiting up to ``timeout`` for some.

        Returns how many were put (0 if the queue stayed full), in order.
        """
        with self.not_full:
            wanted = len(items) - start
            if self.maxsize > 0:
                if self._qsize() >= self.maxsize:
                    self.not_full.wait(timeout)  # one wait: the caller loops and re-checks its stop flags
                wanted = min(wanted, self.maxsize - self._qsize())
            for index in range(start, start + max(wanted, 0)):
                self._put(items[index])
            if wanted > 0:
                self.unfinished_tasks += wanted
                self.not_empty.notify(wanted)  # one waiting getter per item put
            return max(wanted, 0)

    def preload(self, items: Sequence[Any]) -> None:
        """Put every one of ``items`` now, even past ``maxsize``: for items known before the run starts.

        Later puts wait until the queue is back under ``maxsize``, so it stays bounded from then on.
        """
        with self.not_empty:
            self.queue.extend(items)
            self.unfinished_tasks += len(items)
            self.not_empty.notify(len(items))

    def get_many(self, limit: int, timeout: float, until: Any = None) -> list[Any]:
        """Take up to ``limit`` items, waiting up to ``timeout`` for the first one.

        Stops right after an item that ``is until``, so a sentinel meant for one
        taker is never swallowed by another. Raises ``queue.Empty`` if nothing came.
        """
        with self.not_empty:
            if not self._qsize():
                self.not_empty.wait(timeout)
                if not self._qsize():
                    raise queue.Empty
            items: list[Any] = []
            while self._qsize() and len(items) < limit:
                item = self._get()
                items.append(item)
                if item is until:
                    break
            self.not_full.notify(len(items))  # one waiting putter per slot freed
            return items

    def wake_all(self) -> None:
        """Wake every thread waiting to put or get, so each looks at its stop flags now.

        Never blocks (it may run in a signal handler, in a thread that could hold the
        queue's lock): if the lock is taken, the waiters still look within their poll.
        """
        if not self.mutex.acquire(blocking=False):
            return
        try:
            self.not_empty.notify_all()
            self.not_full.notify_all()
        finally:
            self.mutex.release()
