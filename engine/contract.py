"""The one thing a worker may import from the engine.

A worker is a plain class: ``cls(**params)`` builds one object per thread,
when the thread takes its first item (a thread that never gets one builds
none), ``process(item)`` or ``process_batch(items)`` returns an iterable of
outputs (or ``None``), and an optional ``close()`` runs once when the thread ends.
If ``cls(**params)`` raises, the item goes back to the queue for another thread
and the thread dies (it is restarted up to ``max_restarts``).
Raising any exception fails the item (or the whole batch).  A batch worker
that can tell which items of a batch are bad raises :class:`ItemsFailed`
so only those fail.

An optional ``counters`` attribute (a mapping of str name -> number, typically a
``collections.Counter``, only ever updated by its own thread) is summed per
stage into the run report, for outcomes that are neither an output nor a
failure (``no_data``, for example). The monitor also copies it while the
thread runs, for the live view and metrics; keep it a plain dict or Counter so
that copy is atomic. Dotted names are grouped in the report (see
:mod:`engine.counters`).

One counter name is read by the engine itself: ``overload``. A worker adds
one to it each time the far end says it is overloaded (for HTTP: a 429 or
503 answer, a timeout). A stage with ``instances: auto`` shrinks its pool
when it grows (see :mod:`engine.autoscale`); other stages only report it.

An optional classmethod ``prepare_stage(params)`` runs once per stage, in the
caller's thread, before any worker thread starts: the place to check that a
service answers, so that a run that cannot work stops at once with one clear
sentence instead of failing every item. Whatever it raises stops the run
before it starts (:class:`engine.StageSetupError`).

An optional classmethod ``check_replay(item)`` is asked, when a dead-letter
file is replayed (:mod:`engine.replay`), about each item bound for the stage
as it comes back from JSON; raising ``ValueError`` (saying why) skips the item,
for items the worker cannot take again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class ItemsFailed(Exception):
    """Some items of a batch failed; the others were handled.

    ``failures`` pairs each failed item with its exception; ``outputs`` are
    the outputs of the items that succeeded, passed downstream as usual.
    """

    def __init__(
        self,
        failures: Sequence[tuple[Any, BaseException]],
        outputs: Iterable[Any] = (),
    ) -> None:
        self.failures = list(failures)
        self.outputs = list(outputs)
        super().__init__(f"{len(self.failures)} item(s) of the batch failed")
