"""Running stages: worker threads, the queues between them, and the poison pill.

A stop or an abandoned queue wakes the threads waiting on it at once (see
:meth:`Channel.wake_all`), so waiting threads need not poll. Every blocking
``get``/``put`` here still waits at most one poll before it looks at the stop
flags again: a safety net, long enough that idle threads cost next to nothing.

Costs per thread are O(1): a thread that ends reports itself to its stage
(:meth:`Stage.supervise` looks only at those), counts of ended threads are
folded into the stage's totals once, and pills go in as one batch.

Threads start on demand, as ``ThreadPoolExecutor``'s do: a stage starts with one,
and starts more, up to ``instances``, while items wait and no thread is idle to take
them (see :meth:`Stage.grow`). ``instances: 5000`` over 400 items starts about 400
threads, and a thread builds its worker on its first item.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.channel import Channel
from engine.config import StageConfig
from engine.contract import ItemsFailed
from engine.dead_letter import DeadLetterFile
from engine.text import describe, short_repr

log = logging.getLogger(__name__)

# Longest wait before a blocked thread re-checks its stop flags. Only a safety net: stops and
# abandoned queues wake their waiters at once (the monitor retries a wake a signal handler could not do).
POLL_SECONDS = 1.0
# Idle threads of a run wake at most this often in all: 10,000 threads polling every 0.1 s
# would spend the GIL on nothing but waking and leave the monitor no time to send pills.
_WAKEUPS_PER_SECOND = 1000


def poll_seconds(threads: int) -> float:
    """How long each of a run's ``threads`` waits on a queue before it looks at its stop flags again."""
    return max(POLL_SECONDS, threads / _WAKEUPS_PER_SECOND)


_FIRST_THREADS = 1  # threads a stage starts with; the rest start on demand (see Stage.grow)
_CHUNK = 64  # most items moved under one lock acquisition
_CHEAP_ITEM_SECONDS = 0.0002  # items faster than this travel in chunks
_MAX_BUFFER_SECONDS = 0.05  # longest an output waits in a thread's buffer
_LOGGED_FAILURES = 10  # per stage; the rest are only in the dead-letter file

RUNNING, DONE, STOPPED, DIED = "running", "done", "stopped", "died"
RETIRED = "retired"  # a thread's outcome when an auto pool shrank: it ended after its item, on purpose
LOST, INTERRUPTED = "lost", "interrupted"  # dead-letter kinds of an item its stage never started


class _Pill:
    """The poison pill. A private type, so no data item can ever be mistaken for it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<pill>"


PILL = _Pill()


class StageQueue:
    """A bounded queue between stages, with what the monitor needs to know about its two ends."""

    def __init__(self, name: str, maxsize: int) -> None:
        self.name = name
        self.queue = Channel(maxsize)
        self.producers: list[Stage] = []
        self.consumer: Stage | None = None
        # Why nobody will take from this queue any more. Set once; the monitor then
        # drains it into the dead-letter file and producers stop waiting for room.
        self.abandoned: str | None = None
        self.pills_owed: int | None = None  # set when every producer is done

    def abandon(self, reason: str) -> None:
        if self.abandoned is None:
            self.abandoned = reason
        self.queue.wake_all()  # producers waiting for room see it now, not after their poll

    def put_all(self, items: list[Any], poll: float = POLL_SECONDS) -> list[Any]:
        """Put ``items``, waiting while the queue is full; return those left if it was abandoned meanwhile."""
        done = 0
        while self.abandoned is None:
            done += self.queue.put_many(items, done, timeout=poll)
            if self.consumer is not None:
                self.consumer.grow()  # the items may need more threads than are idle
            if done == len(items):
                return []
        return items[done:]


@dataclass(eq=False)
class _Slot:
    """One worker thread and what it has done. Only its own thread writes the counts."""

    index: int
    thread: threading.Thread | None = None
    outcome: str = RUNNING  # set last, when the thread has closed its worker
    error: BaseException | None = None
    holding: list[Any] = field(default_factory=list)  # the chunk in hand; items from ``position`` on are unfinished
    position: int = 0
    retiring: bool = False  # set by Stage.resize (auto pools): end after the item in hand
    busy_seconds: float = 0.0  # time spent in process() (for instances: auto)
    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # failed items by error type
    counters: Counter[str] = field(default_factory=Counter)  # the worker's, summed when the thread ends
    live_counters: Any = None  # the worker's own counters mapping, read while the thread runs
    worker: Any = None  # built when the thread takes its first item; dropped when the thread ends


@dataclass
class _Tally:
    """The counts of threads that have ended, added up once each (so totals cost O(threads running))."""

    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    counters: Counter[str] = field(default_factory=Counter)
    died: int = 0  # threads that ended with outcome DIED
    retired: int = 0  # threads an auto pool retired (outcome RETIRED)
    busy_seconds: float = 0.0

    def add(self, slot: _Slot) -> None:
        self.items_in += slot.items_in
        self.items_out += slot.items_out
        self.failed += slot.failed
        self.errors.update(slot.errors)
        self.counters.update(slot.counters)
        self.died += slot.outcome == DIED
        self.retired += slot.outcome == RETIRED
        self.busy_seconds += slot.busy_seconds


class Stage:
    """A pool of ``instances`` threads, each running one worker object over the input queue.

    The monitor thread alone calls :meth:`supervise`, which hands each thread
    that ended to the stage's totals exactly once; the properties below read
    the totals plus the threads still running, so they are exact in the
    monitor's thread and a close snapshot anywhere else.
    """

    def __init__(
        self,
        config: StageConfig,
        input_queue: StageQueue,
        output_queues: list[StageQueue],
        dead_letters: DeadLetterFile,
        wake: threading.Event,
        poll: float | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.input = input_queue
        self.outputs = output_queues
        self._dead_letters = dead_letters
        self._wake = wake  # set when a thread ends, so the monitor acts at once
        self.slots: list[_Slot] = []  # every thread the stage has had, in start order
        self._running: dict[int, _Slot] = {}  # by index: threads whose end the monitor has not handled yet
        self._ended: deque[_Slot] = deque()  # threads that ended, for supervise(); append/popleft are atomic
        self._retired = _Tally()  # the counts of every thread supervise() has handled
        self._last_death: BaseException | None = None
        # Threads are added by the thread that starts the run, by threads and producers that find
        # items waiting (grow), and by the monitor (restarts, resizes); the pill count is taken under it too.
        self._spawn_lock = threading.Lock()
        self._started = False  # start() has started the first threads
        self._pool = 0  # threads started to make up the pool (restarts not counted; retired ones taken off)
        self._refused: str | None = None  # why the system refused a thread on demand: grow no more
        # Every thread counts itself in and out of _busy_threads, a chunk at a time.
        self._busy_lock = threading.Lock()
        self._busy_threads = 0
        self.peak_busy = 0  # the most threads that held items at the same moment
        self.restarts = 0
        self.target = config.instances  # threads wanted, not counting those retiring (instances: auto moves it)
        self.peak = config.instances  # the largest target so far
        self.stop_event = threading.Event()
        self.poll = poll if poll is not None else poll_seconds(config.instances)
        self.stop_reason: str | None = None
        self._stop_kind = LOST  # the dead-letter kind of items not started because of the stop
        self.dead_reason: str | None = None
        self.started_at = 0.0
        self.ended_at: float | None = None
        self._lost = 0
        self._lost_lock = threading.Lock()  # losses are recorded by producers and the monitor alike
        self._failure_count = itertools.count()  # next() on it is atomic: no lock needed to number failures

    # -- state, read by the monitor ------------------------------------------

    @property
    def finished(self) -> bool:
        """Every thread has ended and the monitor has dealt with it (no restart pending)."""
        return self.ended_at is not None

    @property
    def state(self) -> str:
        if self.dead_reason:
            return DIED
        if self.stop_reason:
            return STOPPED
        return DONE if self.finished else RUNNING

    @property
    def alive(self) -> int:
        """Threads started and not yet ended (a thread that just ended counts until the monitor handles it)."""
        return len(self._running)

    @property
    def busy(self) -> int:
        """Items in the hands of running threads (a snapshot, for display)."""
        return sum(len(s.holding) - s.position for s in self._live())

    @property
    def items_in(self) -> int:
        return self._retired.items_in + sum(s.items_in for s in self._live())

    @property
    def items_out(self) -> int:
        return self._retired.items_out + sum(s.items_out for s in self._live())

    @property
    def failed(self) -> int:
        return self._retired.failed + sum(s.failed for s in self._live())

    @property
    def lost(self) -> int:
        return self._lost

    def errors(self) -> dict[str, int]:
        """Failed items by error type, running threads included (a snapshot)."""
        total = Counter(self._retired.errors)
        for slot in self._live():
            total.update(slot.errors)
        return dict(total)

    def counters(self) -> dict[str, float]:
        """The sum of every thread's worker counters, running threads included (a snapshot)."""
        total = Counter(self._retired.counters)
        for slot in self._live():
            if slot.outcome != RUNNING:
                total.update(slot.counters)
            elif slot.live_counters is not None:
                total.update(_snapshot(slot.live_counters))
        return dict(total)

    def _live(self) -> list[_Slot]:
        # list() of a dict's values runs no Python code, so under the GIL it is a consistent copy.
        return list(self._running.values())

    # -- control ---------------------------------------------------------------

    def start(self) -> None:
        """Start the first thread(s); each waits for its first item (nothing is queued yet) before it builds its worker.

        The others start on demand (:meth:`grow`). Raises ``RuntimeError`` if the system
        refuses a thread (those started so far end by themselves once :meth:`cancel` is called).
        """
        self.started_at = time.monotonic()
        with self._spawn_lock:
            slots = [self._add_slot() for _ in range(min(self.config.instances, _FIRST_THREADS))]
            self._pool = len(slots)
        for slot in slots:
            assert slot.thread is not None
            slot.thread.start()
        self._started = True

    def grow(self) -> None:
        """Start threads for the items waiting that no idle thread will take, up to ``target`` in the pool.

        Called by a thread that has just taken items, by producers after they put some, and
        on every monitor tick; cheap once the pool is full. Threads that died are not replaced
        here (restarts are the monitor's, within ``max_restarts``). Once the input's pills are
        counted, each thread started is owed one more, and gets it here.
        """
        if self._pool >= self.target or self._refused is not None or not self._started or self.stop_event.is_set():
            return
        idle = len(self._running) - self._busy_threads
        wanted = min(self.target - self._pool, self.input.queue.waiting() - idle)
        if wanted <= 0 or not self._spawn_lock.acquire(blocking=False):
            return  # nothing to do, or another thread is starting threads now and will see the same
        try:
            for _ in range(min(wanted, self.target - self._pool)):
                if self.stop_event.is_set() or not self._start_on_demand():
                    break
        finally:
            self._spawn_lock.release()

    def cancel(self) -> None:
        """Before any item is queued: every thread ends without taking one (so without building its worker)."""
        self.stop_event.set()
        self.input.queue.wake_all()

    def stop(self, reason: str, kind: str = LOST) -> None:
        """Take no new items: each thread ends after the item (or batch) in hand.

        What is queued, and what producers still hand over, is dead-lettered as
        ``kind`` (``lost``, or ``interrupted`` for a Ctrl+C) with ``reason``.
        """
        if self.stop_reason is None and not self.finished:
            self.stop_reason, self._stop_kind = reason, kind
        self.stop_event.set()
        self.input.abandon(reason)  # also wakes this stage's threads waiting for items

    def supervise(self) -> None:
        """Called by the monitor: handle the threads that ended since the last call, and notice the stage's end.

        Costs O(threads that ended): each is added to the totals once, and restarted if it died.
        """
        while self._ended:
            slot = self._ended.popleft()
            del self._running[slot.index]
            self._retired.add(slot)
            if slot.outcome != DIED:
                continue
            self._last_death = slot.error
            if self.restarts < self.config.max_restarts and not slot.retiring and not self.stop_event.is_set():
                self.restarts += 1
                log.warning(
                    "%s: restarting a thread that died (%s/%s): %s",
                    self.name, self.restarts, self.config.max_restarts, describe(slot.error),
                )
                self._spawn()
        if self.ended_at is None and self._started and not self._running:
            self.ended_at = time.monotonic()
            kept = len(self.slots) - self._retired.retired  # retired threads ended on purpose
            if kept and self._retired.died == kept:
                self.dead_reason = (
                    f"stage {self.name} died: {describe(self._last_death)} "
                    f"(every thread failed, after {self.restarts} restart{'s' if self.restarts != 1 else ''})"
                )
                self.input.abandon(f"not processed: {self.dead_reason}")

    def threads(self) -> list[threading.Thread]:
        """Every thread the stage has started, to join once they have ended."""
        return [s.thread for s in self.slots if s.thread is not None and s.thread.ident is not None]

    # -- instances: auto (see engine.autoscale); called from the monitor thread only -----

    def resize(self, target: int) -> None:
        """Grow or shrink the pool to ``target`` threads: new threads start for the items waiting, and
        retiring ones end after the item in hand (closing their worker; never restarted).

        Growth starts threads as :meth:`grow` does, for the items waiting. A retiring
        thread that ends without its pill leaves one over, which the monitor drains.
        """
        grown = target > self.target
        if not grown:
            with self._spawn_lock:  # _pool is also counted up by threads starting others
                excess = self._pool - target
                for slot in reversed(self._live()):  # the newest first
                    if excess <= 0:
                        break
                    if slot.outcome == RUNNING and not slot.retiring:
                        slot.retiring = True
                        self._pool -= 1
                        excess -= 1
        self.target = target
        self.peak = max(self.peak, target)
        if grown:
            self.grow()  # threads for the items waiting; more start as more wait

    def count_pills(self) -> None:
        """Called by the monitor once every producer of the input is done: owe one pill per thread running.

        A retiring thread counts (it may take one before it sees that it retires; a pill left
        over is drained). Counted under the lock that starts threads, so a thread started on
        demand is either counted here or given its own pill by :meth:`grow`.
        """
        with self._spawn_lock:
            self.input.pills_owed = sum(1 for s in self._live() if s.outcome == RUNNING)

    def work_done(self) -> tuple[int, float, float]:
        """Items finished, seconds spent in process() on them, and the workers' ``overload`` count (so far)."""
        live = self._live()
        busy = self._retired.busy_seconds + sum(s.busy_seconds for s in live)
        overload = self._retired.counters.get("overload", 0.0)
        for s in live:
            # One get() of a running worker's dict is atomic under the GIL: no copy needed for one key.
            counters = s.counters if s.outcome != RUNNING else s.live_counters
            try:
                overload += counters.get("overload", 0) if counters is not None else 0
            except Exception:  # a counters object without get(): no overload signals from it
                pass
        return self.items_in - self.busy, busy, overload

    def record_lost(self, item: Any, reason: str) -> None:
        """Account for an item this stage will never process.

        It counts in ``lost``; its dead-letter kind is that of the stop whose
        ``reason`` this is (``interrupted`` after a Ctrl+C), else ``lost``.
        """
        with self._lost_lock:
            self._lost += 1
        kind = self._stop_kind if reason == self.stop_reason else LOST
        self._dead_letters.write(self.name, kind, item, "NotProcessed", reason)

    # -- the worker threads ----------------------------------------------------

    def _add_slot(self) -> _Slot:
        # Called with _spawn_lock held.
        slot = _Slot(index=len(self.slots))
        # A daemon thread only to skip CPython's bookkeeping of non-daemon threads at each start
        # (3.11 scans every live one: O(W) per start, O(W²) in all). None is ever cut short at
        # exit: the executor joins every thread before run() returns, and the monitor, which must
        # outlive them all, is not a daemon.
        slot.thread = threading.Thread(
            target=self._run, args=(slot,), name=f"{self.name}-{slot.index}", daemon=True
        )
        self.slots.append(slot)
        self._running[slot.index] = slot
        return slot

    def _spawn(self) -> None:
        """Start a thread in place of one that died; if the system refuses it, it counts as a thread that died."""
        with self._spawn_lock:
            slot = self._add_slot()
            self._owe_pill()
        assert slot.thread is not None
        try:
            slot.thread.start()
        except RuntimeError as exc:  # "can't start new thread": the monitor sees a dead thread
            slot.error = exc
            slot.outcome = DIED
            self._report_end(slot)
            log.error("%s: cannot start a thread: %s", self.name, describe(exc))

    def _start_on_demand(self) -> bool:
        """Start one more thread of the pool (called with _spawn_lock held); False if the system refused it."""
        slot = self._add_slot()
        assert slot.thread is not None
        try:
            slot.thread.start()
        except RuntimeError as exc:  # the system's limit on threads: go on with those there are
            self.slots.pop()
            del self._running[slot.index]
            self._refused = describe(exc)
            log.warning(
                "%s: the system refused thread %d of %d (%s); the stage goes on with %d",
                self.name, self._pool + 1, self.target, self._refused, self._pool,
            )
            return False
        self._pool += 1
        self._owe_pill()
        return True

    def _owe_pill(self) -> None:
        # Called with _spawn_lock held, for a thread just added. Before the count (count_pills) the
        # thread is counted with the others; after it, it needs a pill of its own. One too many
        # (a restart whose predecessor left its pill queued) is drained like any left over.
        if self.input.pills_owed is not None:
            self.input.queue.put_sentinels(PILL, 1)

    def _run(self, slot: _Slot) -> None:
        outcome = DIED
        outputs = _Outputs(self)
        try:
            outcome = self._work(slot, outputs)
        except BaseException as exc:  # the thread dies; say so, and account for what it held
            slot.error = exc
            log.error("%s: thread %s died: %s", self.name, slot.index, describe(exc))
            for item in slot.holding[slot.position:]:
                self._fail(item, exc, slot)
            slot.holding, slot.position = [], 0
        finally:
            outputs.flush()  # outputs of items that did finish still go downstream
            worker, slot.worker = slot.worker, None  # slots outlive their threads; workers need not
            if worker is not None:
                self._close(worker, slot, outputs)
                outputs.flush()
                self._collect_counters(worker, slot)
            slot.outcome = outcome  # last: the monitor treats the thread as ended from here
            self._report_end(slot)

    def _build(self, slot: _Slot, taken: list[Any]) -> None:
        """Build the thread's worker, on its first item: a thread that only ever gets its pill builds none.

        If the worker cannot be built, ``taken`` goes back to the front of the queue (for another
        thread, or the dead-letter file if the stage dies) and the error ends the thread.
        """
        try:
            slot.worker = self.config.worker_class(**self.config.params)
        except BaseException:
            self.input.queue.give_back(taken, until=PILL)
            raise
        slot.live_counters = getattr(slot.worker, "counters", None)

    def _report_end(self, slot: _Slot) -> None:
        """Hand an ended thread to the monitor and wake it (supervise() takes it from there)."""
        self._ended.append(slot)
        # Thousands of threads ending together would queue on the event's lock to set it; one that
        # finds it set may skip it: the monitor clears it before it looks at _ended, so it sees this one.
        if not self._wake.is_set():
            self._wake.set()

    def _work(self, slot: _Slot, outputs: "_Outputs") -> str:
        """Process chunks of items until a pill (DONE) or a stop (STOPPED)."""
        batch_size = self.config.batch_size
        limit = 1
        while True:
            if self.stop_event.is_set():
                return STOPPED
            if slot.retiring:
                return RETIRED
            items = self._take(limit if batch_size is None else batch_size)
            if not items:
                continue
            if slot.worker is None and items[0] is not PILL:
                self._build(slot, items)
            ended = items[-1] is PILL
            if ended:
                items.pop()
            if items:
                self._count_busy(1)
                self.grow()  # more items waiting than idle threads: start more, up to target
                try:
                    limit = self._handle(slot.worker, items, slot, outputs)
                finally:
                    self._count_busy(-1)
            if ended:
                return DONE

    def _handle(self, worker: Any, items: list[Any], slot: _Slot, outputs: "_Outputs") -> int:
        """Process one chunk of items; return how many to take next time."""
        started = time.perf_counter()
        slot.items_in += len(items)
        slot.holding, slot.position = items, 0
        if self.config.batch_size is None:
            for item in items:
                if self.stop_event.is_set():  # a stop ends the chunk, not just the next take
                    self._give_back(items[slot.position:], slot)
                    break
                self._process(worker, item, slot, outputs)
                slot.position += 1
        else:
            self._process_batch(worker, items, slot, outputs)
        slot.busy_seconds += time.perf_counter() - started
        slot.holding, slot.position = [], 0
        outputs.flush()
        # Cheap items travel in chunks: the queue's lock costs more than the work.
        # Slow items travel one by one, so an idle thread can always take the next.
        cheap = (time.perf_counter() - started) / len(items) < _CHEAP_ITEM_SECONDS
        return _CHUNK if cheap else 1

    def _count_busy(self, change: int) -> None:
        with self._busy_lock:
            self._busy_threads += change
            self.peak_busy = max(self.peak_busy, self._busy_threads)

    def _give_back(self, items: list[Any], slot: _Slot) -> None:
        """Items taken but not started when the stage was stopped: lost, like those still queued."""
        slot.items_in -= len(items)
        for item in items:
            self.record_lost(item, self.stop_reason or "stopped before it was processed")

    def _take(self, limit: int) -> list[Any]:
        """Up to ``limit`` items, ending with the pill if one came; [] if none came within a poll.

        A batch stage waits up to ``batch_timeout`` to fill its batch.
        """
        source = self.input.queue
        try:
            items = source.get_many(limit, self.poll, until=PILL)
        except queue.Empty:
            return []
        if self.config.batch_size is None or len(items) == limit or items[-1] is PILL:
            return items
        deadline = time.monotonic() + self.config.batch_timeout
        while len(items) < limit and items[-1] is not PILL and not self.stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                items += source.get_many(limit - len(items), min(remaining, self.poll), until=PILL)
            except queue.Empty:
                pass
        return items

    def _process(self, worker: Any, item: Any, slot: _Slot, outputs: "_Outputs") -> None:
        try:
            for output in outputs_of(worker.process(item), "process"):
                outputs.add(output, slot)
        except ItemsFailed as exc:  # a buffering worker may name earlier items too
            self._some_failed(exc, slot, outputs)
        except Exception as exc:
            self._fail(item, exc, slot)

    def _process_batch(self, worker: Any, items: list[Any], slot: _Slot, outputs: "_Outputs") -> None:
        try:
            for output in outputs_of(worker.process_batch(items), "process_batch"):
                outputs.add(output, slot)
        except ItemsFailed as exc:
            self._some_failed(exc, slot, outputs)
        except Exception as exc:
            for item in items:
                self._fail(item, exc, slot)

    def _some_failed(self, exc: ItemsFailed, slot: _Slot, outputs: "_Outputs") -> None:
        for output in exc.outputs:
            outputs.add(output, slot)
        for item, error in exc.failures:
            self._fail(item, error, slot)

    def _fail(self, item: Any, error: BaseException, slot: _Slot) -> None:
        slot.failed += 1
        slot.errors[type(error).__name__] += 1
        try:
            message = str(error) or repr(error)
        except Exception:  # a broken __str__ must not kill the thread: the item is still recorded
            message = type(error).__name__
        self._dead_letters.write(self.name, "failed", item, type(error).__name__, message)
        number = next(self._failure_count)
        if number < _LOGGED_FAILURES:
            log.warning("%s failed on %s: %s", self.name, short_repr(item), describe(error))
        elif number == _LOGGED_FAILURES:
            where = "the dead-letter file is broken" if self._dead_letters.broken else f"all are in {self._dead_letters.path}"
            log.warning("%s: more failures; %s", self.name, where)

    def _close(self, worker: Any, slot: _Slot, outputs: "_Outputs") -> None:
        close = getattr(worker, "close", None)
        if close is None:
            return
        try:
            close()
        except ItemsFailed as exc:  # a writer flushing its buffer can still fail some rows
            self._some_failed(exc, slot, outputs)
        except BaseException as exc:  # sys.exit() in close() too: the thread must still report its end
            log.error("%s: close() failed: %s", self.name, describe(exc))
            self._fail(None, RuntimeError(f"close() failed: {describe(exc)}"), slot)

    def _collect_counters(self, worker: Any, slot: _Slot) -> None:
        try:
            slot.counters.update(getattr(worker, "counters", None) or {})
        except Exception as exc:  # not a mapping of counts: say so, and end the thread normally
            log.error("%s: the worker's counters cannot be summed: %s", self.name, describe(exc))


def _snapshot(counters: Any) -> dict[str, Any]:
    """A copy of a running worker's counters, taken without stopping it.

    ``dict(d)`` of a dict (or a subclass that keeps dict's iteration, such as
    ``Counter``) with str keys and number values copies in C and runs no Python
    code, so under the GIL it is atomic: the worker is never mid-update in it.
    """
    try:
        return dict(counters)
    except (RuntimeError, TypeError, ValueError):  # a mapping of another kind, changed while copied
        return {}


class _Outputs:
    """A thread's outputs on their way to the output queues, put a chunk at a time."""

    def __init__(self, stage: Stage) -> None:
        self._stage = stage
        self._buffer: list[Any] = []
        self._since = 0.0

    def add(self, output: Any, slot: _Slot) -> None:
        slot.items_out += 1
        if not self._buffer:
            self._since = time.monotonic()
        self._buffer.append(output)
        # A slow generator's outputs must not wait for the chunk to fill.
        if len(self._buffer) >= _CHUNK or time.monotonic() - self._since > _MAX_BUFFER_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        chunk, self._buffer = self._buffer, []
        for target in self._stage.outputs:
            for output in target.put_all(chunk, self._stage.poll):
                assert target.consumer is not None and target.abandoned is not None
                target.consumer.record_lost(output, target.abandoned)


def outputs_of(result: Any, method: str) -> Iterable[Any]:
    """What a worker's ``process``/``process_batch`` returned, as outputs: None is none.

    A string, bytes or mapping is iterable, but a worker that returns one meant one output,
    not its characters or keys; like anything else that is not iterable it fails the item.
    """
    if result is None:
        return ()
    if isinstance(result, (str, bytes, bytearray, Mapping)) or not isinstance(result, Iterable):
        raise TypeError(
            f"{method}() returned a {type(result).__name__}; yield outputs, or return a list of them (or None)"
        )
    return result
