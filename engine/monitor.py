"""The monitor thread: supervision, poison pills, and the live status of every stage.

It starts before the worker threads and reports their start-up; it supervises
once the run is open (each stage's first thread started, the first items queued). It is the
only thread that puts pills, and it puts them into a queue only when every
thread of every stage writing into that queue has ended: one pill per consumer
thread still running, after the last item, all in one batch (pills may go past
a queue's maxsize: they are one shared object). A tick costs O(stages) plus the
threads that ended since the last one; a status report costs O(threads running).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from engine.autoscale import StageAutoscaler
from engine.report import StageStatus
from engine.stage import PILL, Stage, StageQueue

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1  # the monitor also wakes at once whenever a worker thread ends
_DRAIN_CHUNK = 1000  # items drained from a queue under one lock acquisition
FIRST_STATUS_SECONDS = 0.5  # the first status comes this soon (or after monitor_interval, if shorter)

StatusCallback = Callable[[list[StageStatus]], None]


class Monitor(threading.Thread):
    """Watches the stages until every one has ended; then sets ``done``.

    Not a daemon: worker threads only end on a pill or a stop, and only the
    monitor sends pills, so it must outlive them.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        queues: Sequence[StageQueue],
        wake: threading.Event,
        interval: float,
        on_status: StatusCallback,
    ) -> None:
        super().__init__(name="monitor")
        self.stages = list(stages)
        self.queues = list(queues)
        self.done = threading.Event()
        self.crash: BaseException | None = None
        self._wake = wake
        self._interval = interval
        self._on_status = on_status
        self._last_counts = {s.name: 0 for s in self.stages}
        self._last_time = time.monotonic()
        self._queue_peaks = {s.name: 0 for s in self.stages}  # deepest input queue seen, by stage
        self._autoscalers = [StageAutoscaler(s) for s in self.stages if s.config.auto is not None]
        self._next_status = 0.0  # when the next status is due
        self._start_decided = threading.Event()  # set by open() or abandon()
        self._abandoned = False

    def open(self) -> None:
        """Every thread has started and the first items are queued: supervise, send pills, report, until the end."""
        self._start_decided.set()

    def abandon(self) -> None:
        """The run could not start (see ``PipelineExecutor``): end now, reporting and draining nothing."""
        self._abandoned = True
        self._start_decided.set()

    def run(self) -> None:
        try:
            self._next_status = time.monotonic() + min(self._interval, FIRST_STATUS_SECONDS)
            if not self._report_start_up():
                return
            self._watch()
        except BaseException as exc:  # never leave workers waiting for pills that will not come
            self.crash = exc
            log.critical("the monitor failed; stopping every stage", exc_info=True)
            for stage in self.stages:
                stage.stop(f"the pipeline monitor failed: {exc!r}")
            while any(slot.outcome == "running" for stage in self.stages for slot in stage.slots):
                self._drain_abandoned()
                time.sleep(TICK_SECONDS)
            self._drain_abandoned()
        finally:
            self.done.set()

    def statuses(self) -> list[StageStatus]:
        """The status of every stage now, with rates since the previous call."""
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-9)
        result = []
        for stage in self.stages:
            items_in = stage.items_in
            depth = self._sample_depth(stage)
            result.append(
                StageStatus(
                    name=stage.name,
                    alive=stage.alive,
                    instances=stage.config.instances,
                    queue_depth=depth,
                    items_in=items_in,
                    items_out=stage.items_out,
                    failed=stage.failed,
                    lost=stage.lost,
                    rate=(items_in - self._last_counts[stage.name]) / elapsed,
                    expected=_expected(stage),
                    state=stage.state,
                    busy=stage.busy,
                    queue_maxsize=stage.input.queue.maxsize,
                    queue_peak=self._queue_peaks[stage.name],
                    counters=stage.counters(),
                    queue_name=stage.input.name,
                    pool_size=stage.target,
                    min_instances=stage.config.auto.min_instances if stage.config.auto else None,
                    max_instances=stage.config.auto.max_instances if stage.config.auto else None,
                )
            )
            self._last_counts[stage.name] = items_in
        self._last_time = now
        return result

    def queue_peak(self, stage: Stage) -> int:
        """The deepest ``stage``'s input queue has been, as sampled so far."""
        return self._queue_peaks[stage.name]

    def _sample_depth(self, stage: Stage) -> int:
        """The depth of ``stage``'s input queue now, kept as its peak if it is the deepest yet."""
        depth = stage.input.queue.waiting()
        if depth > self._queue_peaks[stage.name]:
            self._queue_peaks[stage.name] = depth
        return depth

    # -- one tick --------------------------------------------------------------

    def _report_start_up(self) -> bool:
        """Report status while the threads start (thousands take a while); False if the run was abandoned."""
        while not self._start_decided.wait(max(self._next_status - time.monotonic(), 0)):
            self._report_due()
        return not self._abandoned

    def _report_due(self) -> None:
        if time.monotonic() >= self._next_status:
            self._report_status()
            self._next_status = time.monotonic() + self._interval

    def _watch(self) -> None:
        while True:
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()  # anything set after this is seen on the next tick
            self._tick()
            if all(stage.finished for stage in self.stages):
                self._drain_abandoned()
                self._drain_leftovers()
                self._report_status()
                return
            self._report_due()

    def _tick(self) -> None:
        for stage_queue in self.queues:
            stage_queue.queue.retry_wake()  # a stop in a signal handler may not have woken its waiters
        for stage in self.stages:
            self._sample_depth(stage)
            was_dead = stage.dead_reason is not None
            stage.supervise()
            if stage.dead_reason and not was_dead:
                log.error("%s", stage.dead_reason)
                self._stop_upstream(stage, f"stopped because {stage.dead_reason}")
        for autoscaler in self._autoscalers:  # instances: auto; after supervise, before the pills
            autoscaler.tick()
        for stage in self.stages:
            stage.grow()  # a safety net: threads and producers start threads as items come
        self._drain_abandoned()
        for stage_queue in self.queues:
            self._send_pills(stage_queue)

    def _stop_upstream(self, stage: Stage, reason: str) -> None:
        # Producers feeding a dead stage would only fill a queue nobody reads.
        for producer in stage.input.producers:
            if producer.stop_reason is None and not producer.finished:
                producer.stop(reason)
                self._stop_upstream(producer, reason)

    def _send_pills(self, stage_queue: StageQueue) -> None:
        if stage_queue.abandoned is not None:
            return
        if stage_queue.pills_owed is None:
            if not all(producer.finished for producer in stage_queue.producers):
                return
            assert stage_queue.consumer is not None
            stage_queue.consumer.count_pills()  # one per consumer thread running
        if stage_queue.pills_owed:
            stage_queue.queue.put_sentinels(PILL, stage_queue.pills_owed)  # one batch, past maxsize if need be
            stage_queue.pills_owed = 0

    def _drain_abandoned(self) -> None:
        for stage_queue in self.queues:
            if stage_queue.abandoned is not None:
                self._drain(stage_queue, stage_queue.abandoned)

    def _drain_leftovers(self) -> None:
        # Every stage has ended, so nothing should be left; if anything is, it is accounted for.
        for stage_queue in self.queues:
            self._drain(stage_queue, "left in the queue when the run ended")

    @staticmethod
    def _drain(stage_queue: StageQueue, reason: str) -> None:
        assert stage_queue.consumer is not None
        while True:
            try:
                items = stage_queue.queue.get_many(_DRAIN_CHUNK, 0, until=PILL)
            except queue.Empty:
                return
            for item in items:
                if item is not PILL:
                    stage_queue.consumer.record_lost(item, reason)

    def _report_status(self) -> None:
        try:
            self._on_status(self.statuses())
        except Exception:  # a broken display must not stop the pipeline
            log.exception("status callback failed")


def _expected(stage: Stage) -> int | None:
    """How many items the stage will get in all, once that is known."""
    if stage.config.is_source:
        return len(stage.config.input_values)
    producers = stage.input.producers
    if all(p.finished for p in producers):
        return sum(p.items_out for p in producers)
    return None


def log_statuses(statuses: list[StageStatus]) -> None:
    """The default status callback: one compact log line per stage.

    For example ``PriceWorker: done 40/100 (40%), 3 in flight, queue 10/10 full, 12.5/s, 2 failed, 4/4 threads``.
    """
    for s in statuses:
        errors = s.failed + s.lost
        log.info(
            "%s: done %s, %d in flight, queue %s, %.1f/s%s, %s threads",
            s.name, progress_text(s), s.busy, queue_text(s), s.rate,
            f", {errors} failed or lost" if errors else "", threads_text(s),
        )


def threads_text(status: StageStatus) -> str:
    """``alive/instances``; for ``instances: auto``, ``alive/size auto min-max`` (the size it aims at now)."""
    if status.min_instances is None:
        return f"{status.alive}/{status.instances}"
    return f"{status.alive}/{status.pool_size} auto {status.min_instances}-{status.max_instances}"


def progress_text(status: StageStatus) -> str:
    """``done/total (pct%)`` once the total is known, else just ``done``."""
    if status.expected is None:
        return str(status.done)
    return f"{status.done}/{status.expected} ({percent(status.done, status.expected)}%)"


def percent(done: int, expected: int) -> int:
    """Whole percent done, never 100 before everything is (nor above it); an empty total is 100%."""
    if expected <= 0 or done >= expected:
        return 100
    return min(int(100 * done / expected), 99)


def queue_text(status: StageStatus) -> str:
    """``depth/maxsize``, with ``full`` once the queue holds ``maxsize`` items; just ``depth`` if unbounded."""
    if status.queue_maxsize <= 0:
        return str(status.queue_depth)
    full = " full" if status.queue_depth >= status.queue_maxsize else ""
    return f"{status.queue_depth}/{status.queue_maxsize}{full}"
