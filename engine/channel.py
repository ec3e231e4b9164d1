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


_FIRST_WOKEN = 4  # takers woken at once by preload/put_sentinels; each wakes one more as it takes


class Channel(queue.Queue):
    """A bounded FIFO queue with ``put_many`` and ``get_many``."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        # A wake_all() that could not take the lock; retry_wake() does it later. A plain flag:
        # set by whichever thread failed (a signal handler), cleared by the one that retries.
        self._wake_owed = False
        self._sentinels = 0  # sentinels in the queue (see put_sentinels); guarded by the queue's mutex

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
        It wakes a few waiting takers, each of which wakes the next (see :meth:`get_many`): waking
        thousands at once would have them all fight for the GIL while this thread still holds the lock.
        """
        with self.not_empty:
            self._extend(items)

    def put_sentinels(self, sentinel: Any, count: int) -> None:
        """Put ``count`` times ``sentinel`` (a poison pill: one per taker), even past ``maxsize``.

        A pill is one shared object, so it costs no memory, and thousands of takers must not wait
        for room to get theirs. :meth:`waiting` does not count them.
        """
        with self.not_empty:
            self._sentinels += count
            self._extend([sentinel] * count)

    def give_back(self, items: Sequence[Any], until: Any = None) -> None:
        """Put ``items``, just taken by :meth:`get_many` with ``until``, back at the front in order, even past maxsize."""
        with self.not_empty:
            self.queue.extendleft(reversed(items))
            self.unfinished_tasks += len(items)
            self._sentinels += sum(1 for item in items if item is until)
            if items:
                self.not_empty.notify()

    def waiting(self) -> int:
        """Items waiting, sentinels not counted (a snapshot, for display)."""
        with self.mutex:
            return self._qsize() - self._sentinels

    def _extend(self, items: Sequence[Any]) -> None:
        self.queue.extend(items)
        self.unfinished_tasks += len(items)
        if items:
            self.not_empty.notify(min(len(items), _FIRST_WOKEN))

    def get_many(self, limit: int, timeout: float, until: Any = None) -> list[Any]:
        """Take up to ``limit`` items, waiting up to ``timeout`` for the first one.

        Stops right after an item that ``is until``, so a sentinel meant for one
        taker is never swallowed by another. Raises ``queue.Empty`` if nothing came.
        A taker that leaves items behind wakes one more waiting taker for them.
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
                    self._sentinels = max(self._sentinels - 1, 0)  # an until that came through put() was not counted
                    break
            self.not_full.notify(len(items))  # one waiting putter per slot freed
            if self._qsize():
                self.not_empty.notify()  # pass the baton: the next taker wakes while this one works
            return items

    def wake_all(self) -> None:
        """Wake every thread waiting to put or get, so each looks at its stop flags now.

        Never blocks (it may run in a signal handler, in a thread that could hold the
        queue's lock): if the lock is taken, the wake is owed and :meth:`retry_wake`
        does it (the waiters would otherwise only look at the end of their poll).
        """
        if not self.mutex.acquire(blocking=False):
            self._wake_owed = True
            return
        try:
            self._wake_owed = False
            self.not_empty.notify_all()
            self.not_full.notify_all()
        finally:
            self.mutex.release()

    def retry_wake(self) -> None:
        """Do the wake a :meth:`wake_all` could not do, if one is owed (call it from a thread that may block)."""
        if self._wake_owed:
            with self.mutex:
                self._wake_owed = False
                self.not_empty.notify_all()
                self.not_full.notify_all()
