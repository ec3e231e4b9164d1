"""Run a :class:`PipelineConfig` on Ray: pools of stage actors fed by the driver, one call per item.

The mapping (the same YAML, the same workers, the same report):

- a stage is a pool of :class:`StageActor` actors, each with ``max_concurrency`` threads and one
  worker object per thread; ``instances`` = actors x threads (at most one actor per CPU of the cluster);
- a queue's ``maxsize`` bounds the driver's window on that edge: a producer starts no call while
  its consumer has ``maxsize`` items waiting; the driver waits for results with ``ray.wait``;
- there are no pills: a stage whose producers have ended and which has nothing waiting or in flight
  is closed (``close()`` on every actor) and its actors are let go;
- ``batch_size`` batches are grouped by the driver (a partial batch leaves after ``batch_timeout``);
- a process that dies is restarted by Ray (``max_restarts``) and its calls are run again; an actor
  that cannot be restarted any more fails the items it held; when every actor of a stage is gone,
  the stage dies (exit 1) and what it was to process is dead-lettered as lost;
- the driver alone counts, forwards items and writes the dead-letter file.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from engine.config import PipelineConfig, StageConfig
from engine.dead_letter import DeadLetterFile
from engine.errors import RunStartError
from engine.executor import PipelineExecutor, remove_if_empty
from engine.monitor import FIRST_STATUS_SECONDS
from engine.report import RunReport, StageStatus
from engine.run_info import utc_now
from engine.stage import INTERRUPTED, LOST, Stage
from engine.text import describe, one_line, short_repr
from ray_executor import runtime
from ray_executor.actor import StageActor

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1  # the longest the driver waits for a result before it looks at interrupts and timers
_LOGGED_FAILURES = 10  # per stage; the rest are only in the dead-letter file


@functools.cache  # one remote class per process: Ray registers it once
def _remote_actor() -> Any:
    return runtime.import_ray().remote(StageActor)


class RayPipelineExecutor(PipelineExecutor):
    """Runs a pipeline once on Ray; the same options, report (with ``executor: ray``) and exit codes
    as :class:`engine.PipelineExecutor`, whose accounting it reuses.

    ``env_vars`` are set in every actor's process (the database URL, say). ``local_only`` lists why
    this run needs this machine (the embedded database, a private price server): on a cluster with
    another machine the run then refuses to start, with :class:`RunStartError`.
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        env_vars: Mapping[str, str] | None = None,
        local_only: Sequence[str] = (),
        **options: Any,
    ) -> None:
        super().__init__(config, **options)
        self._env_vars = dict(env_vars or {})
        self._local_only = list(local_only)
        self._applied_interrupts = 0

    def run(self) -> RunReport:
        """Run the pipeline to its end on Ray and report (see :meth:`engine.PipelineExecutor.run`)."""
        with self._lock:
            if self._started:
                raise RuntimeError("a PipelineExecutor runs once; make a new one")
            self._started = True
        runtime.refuse_remote_address(self._local_only)
        owned = runtime.connect()
        ray = runtime.import_ray()
        try:
            remote = runtime.remote_nodes() if self._local_only else []
            if remote:
                raise RunStartError(runtime.cluster_refusal(self._local_only, f"it has nodes at {', '.join(remote)}"))
            self._prepare_stages()
            return self._run_stages(ray)
        finally:
            if owned:
                ray.shutdown()

    def interrupt(self) -> int:
        """Count an interrupt; the driver applies it at once (safe from a signal handler: it touches nothing else)."""
        self._interrupts += 1
        lines = {
            1: "interrupted: no new items are started; calls in flight finish and the sinks store what is "
               "waiting for them; interrupt again (Ctrl+C) to stop the sinks too",
            2: "interrupted again: the sinks stop after the batch in hand; interrupt a third time (Ctrl+C) to exit at once",
        }
        log.warning("%s", lines.get(self._interrupts, "interrupted again: already stopping"))
        return self._interrupts

    # -- private ---------------------------------------------------------------

    def _run_stages(self, ray: Any) -> RunReport:
        dead_letters = self._open_run_dir()
        try:
            driver = _Driver(ray, self.config, dead_letters, self._env_vars)
        except Exception as exc:  # a worker class or params Ray cannot send to an actor, say
            dead_letters.close()
            remove_if_empty(self.run_path)
            raise RunStartError(f"the stages cannot start on Ray: {one_line(describe(exc), 500)}") from None
        self._stages = driver.stages  # what PipelineExecutor's report and outcome read
        self._monitor = driver  # type: ignore[assignment]  # the same: crash and queue_peak()
        started, self._started_at = time.monotonic(), utc_now()
        log.info("pipeline %s on Ray: %d stages, %d actors, %d threads", self.config.name, len(driver.stages),
                 sum(len(s.actors) for s in driver.stages), sum(s.concurrency for s in driver.stages))
        try:
            driver.open(self._replay)
            self._drive(driver)
        except BaseException as exc:
            driver.crash = exc
            raise
        finally:
            driver.release()
            dead_letters.close()
        return replace(self._report(time.monotonic() - started, dead_letters), executor="ray")

    def _drive(self, driver: "_Driver") -> None:
        next_status = time.monotonic() + min(self.config.monitor_interval, FIRST_STATUS_SECONDS)
        while not driver.finished:
            try:
                if self._applied_interrupts < self._interrupts:
                    self._applied_interrupts = self._interrupts
                    driver.interrupt(self._interrupts)
                driver.step()
                if time.monotonic() >= next_status:
                    self._status(driver)
                    next_status = time.monotonic() + self.config.monitor_interval
            except KeyboardInterrupt:  # no signal handler of the caller's: Ctrl+C counts as interrupt()
                self.interrupt()
        self._status(driver)

    def _status(self, driver: "_Driver") -> None:
        try:
            self._on_status(driver.statuses())
        except Exception:  # a broken display must not stop the pipeline
            log.exception("status callback failed")


@dataclass(eq=False)
class _Actor:
    handle: Any
    slots: int  # calls it runs at once (its max_concurrency)
    busy: int = 0
    pid: int = 0  # of its process, from its last result: a new one means Ray restarted it
    dead: bool = False


@dataclass(eq=False)
class _Call:
    stage: "_RayStage"
    actor: _Actor
    items: list[Any]
    closing: bool = False


@dataclass(eq=False)
class _RayStage:
    """The driver's view of one stage; it has what :class:`engine.PipelineExecutor` reports of a ``Stage``."""

    config: StageConfig
    actors: list[_Actor]
    dead_letters: DeadLetterFile
    producers: list["_RayStage"] = field(default_factory=list)
    consumers: list[tuple["_RayStage", int]] = field(default_factory=list)  # (stage, maxsize of the edge)
    pending: deque[Any] = field(default_factory=deque)  # items waiting for a call: the stage's input queue
    maxsize: int = 0  # of the input queue (0: a source)
    waiting_since: float = 0.0  # when the oldest pending item arrived (for batch_timeout)
    in_flight: int = 0  # items in calls not yet answered
    calls: int = 0  # calls not yet answered, close() calls included
    closing: bool = False
    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    lost: int = 0
    restarts: int = 0
    queue_peak: int = 0
    error_counts: Counter[str] = field(default_factory=Counter)
    counter_totals: Counter[str] = field(default_factory=Counter)
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    stop_reason: str | None = None
    stop_kind: str = LOST
    dead_reason: str | None = None
    _failures_logged: int = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def concurrency(self) -> int:
        return sum(actor.slots for actor in self.actors)

    @property
    def target(self) -> int:
        return self.config.instances

    @property
    def peak(self) -> int:
        return self.config.instances

    # The same rules as a threaded stage's (they read only ended_at, dead_reason and stop_reason).
    finished = Stage.finished
    state = Stage.state

    def counters(self) -> dict[str, float]:
        return dict(self.counter_totals)

    def errors(self) -> dict[str, int]:
        return dict(self.error_counts)

    def accepts(self) -> bool:
        """Whether items sent here are processed (else they are recorded as lost)."""
        return self.stop_reason is None and self.dead_reason is None

    def add(self, items: Iterable[Any]) -> None:
        if not self.accepts():
            reason = self.dead_reason or self.stop_reason or ""
            for item in items:
                self.record_lost(item, f"not processed: {reason}" if self.dead_reason else reason)
            return
        if not self.pending:
            self.waiting_since = time.monotonic()
        self.pending.extend(items)
        self.queue_peak = max(self.queue_peak, len(self.pending))

    def put_back(self, items: list[Any]) -> None:
        """Items a call did not touch, first in line again (or lost, if the stage takes no more)."""
        if self.accepts():
            self.pending.extendleft(reversed(items))
        else:
            self.add(items)

    def stop(self, reason: str, kind: str = LOST) -> None:
        """Take no new items; what waits here, and what producers still send, is recorded as ``kind``."""
        if self.stop_reason is None and not self.finished:
            self.stop_reason, self.stop_kind = reason, kind
        self._drop_pending(reason)

    def die(self, reason: str) -> None:
        self.dead_reason = reason
        self._drop_pending(f"not processed: {reason}")

    def record_lost(self, item: Any, reason: str) -> None:
        self.lost += 1
        kind = self.stop_kind if reason == self.stop_reason else LOST
        self.dead_letters.write(self.name, kind, item, "NotProcessed", reason)

    def fail(self, item: Any, error_type: str, message: str) -> None:
        self.failed += 1
        self.error_counts[error_type] += 1
        self.dead_letters.write(self.name, "failed", item, error_type, message)
        self._failures_logged += 1
        if self._failures_logged <= _LOGGED_FAILURES:
            log.warning("%s failed on %s: %s: %s", self.name, short_repr(item), error_type, one_line(message, 300))
        elif self._failures_logged == _LOGGED_FAILURES + 1:
            log.warning("%s: more failures; all are in %s", self.name, self.dead_letters.path)

    def _drop_pending(self, reason: str) -> None:
        while self.pending:
            self.record_lost(self.pending.popleft(), reason)


class _Driver:
    """The wait loop: starts calls within each edge's window, takes their results, closes stages in order."""

    def __init__(self, ray: Any, config: PipelineConfig, dead_letters: DeadLetterFile, env_vars: Mapping[str, str]) -> None:
        self._ray = ray
        self._config = config
        self.crash: BaseException | None = None
        self._calls: dict[Any, _Call] = {}  # object ref -> the call it answers
        self._last_counts: dict[str, int] = {}
        self._last_time = time.monotonic()
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.stages = [_RayStage(stage, self._start_actors(stage, cpus, env_vars), dead_letters) for stage in config.stages]
        by_name = {stage.name: stage for stage in self.stages}
        for stage in self.stages:
            if stage.config.input_queue is not None:
                stage.maxsize = config.queues[stage.config.input_queue].maxsize
            for queue in stage.config.output_queues:
                for consumer in config.consumers(queue):
                    stage.consumers.append((by_name[consumer.name], config.queues[queue].maxsize))
                    by_name[consumer.name].producers.append(stage)

    def _start_actors(self, stage: StageConfig, cpus: int, env_vars: Mapping[str, str]) -> list[_Actor]:
        """``instances`` threads as at most one actor per CPU of the cluster, spread over its nodes."""
        if stage.auto is not None:
            log.warning("%s: instances: auto is not resized on Ray; it runs with %d threads", stage.name, stage.instances)
        count = min(stage.instances, cpus)
        slots = math.ceil(stage.instances / count)
        options = {
            "max_concurrency": slots,
            "max_restarts": stage.max_restarts,
            "max_task_retries": -1,  # a call whose process died runs again while the actor can restart
            "scheduling_strategy": "SPREAD",
        }
        if env_vars:
            options["runtime_env"] = {"env_vars": dict(env_vars)}
        remote = _remote_actor()
        return [_Actor(remote.options(**options).remote(stage.worker_class, dict(stage.params)), slots)
                for _ in range(count)]

    @property
    def finished(self) -> bool:
        return all(stage.finished for stage in self.stages)

    def queue_peak(self, stage: _RayStage) -> int:
        return stage.queue_peak

    def open(self, replay: Mapping[str, Sequence[Any]]) -> None:
        """Queue each source's input values, and each stage's replayed items."""
        for stage in self.stages:
            first = stage.config.input_values if stage.config.is_source else replay.get(stage.name, ())
            stage.add(first)

    def release(self) -> None:
        """Let every actor go (their processes end); calls still running are abandoned."""
        for stage in self.stages:
            for actor in stage.actors:
                self._kill(actor)

    def interrupt(self, count: int) -> None:
        """The first stops intake (the sinks drain what waits for them); the second stops the sinks too."""
        for stage in self.stages:
            drains = stage.config.is_sink and not stage.config.is_source
            if count >= 2 or not drains:
                stage.stop("interrupted before it was processed", INTERRUPTED)

    def step(self) -> None:
        """Start what may start, wait a tick for results and handle them, close stages that are done."""
        for stage in self.stages:
            self._submit(stage)
        if self._calls:
            ready, _ = self._ray.wait(list(self._calls), num_returns=1, timeout=TICK_SECONDS)
            if ready:
                taken = set(ready)
                rest = [ref for ref in self._calls if ref not in taken]
                more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0) if rest else ([], [])
                refs = [*ready, *more]
                for ref, outcome in zip(refs, self._results(refs)):
                    self._answer(self._calls.pop(ref), outcome)
        else:
            time.sleep(min(TICK_SECONDS, 0.01))  # only a partial batch waiting for its timeout
        for stage in self.stages:
            self._maybe_end(stage)

    def statuses(self) -> list[StageStatus]:
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-9)
        self._last_time = now
        result = []
        for stage in self.stages:
            rate = (stage.items_in - self._last_counts.get(stage.name, 0)) / elapsed
            self._last_counts[stage.name] = stage.items_in
            upstream_done = all(p.finished for p in stage.producers)
            result.append(StageStatus(
                name=stage.name,
                alive=0 if stage.finished else sum(a.slots for a in stage.actors if not a.dead),
                instances=stage.config.instances,
                queue_depth=len(stage.pending),
                items_in=stage.items_in,
                items_out=stage.items_out,
                failed=stage.failed,
                lost=stage.lost,
                rate=round(rate, 1),
                expected=stage.items_in + len(stage.pending) + stage.lost if upstream_done else None,
                state=stage.state,
                busy=stage.in_flight,
                queue_maxsize=stage.maxsize,
                queue_peak=stage.queue_peak,
                counters=stage.counters(),
                queue_name=stage.config.input_queue or f"{stage.name}.input_values",
                pool_size=stage.config.instances,
            ))
        return result

    # -- calls ------------------------------------------------------------------

    def _submit(self, stage: _RayStage) -> None:
        batch = stage.config.batch_size
        while stage.pending and stage.accepts() and not stage.closing and self._room_downstream(stage):
            actor = min((a for a in stage.actors if not a.dead and a.busy < a.slots), key=lambda a: a.busy, default=None)
            if actor is None:
                return
            if batch is not None:
                full = len(stage.pending) >= batch
                due = time.monotonic() - stage.waiting_since >= stage.config.batch_timeout
                if not (full or due or all(p.finished for p in stage.producers)):
                    return
                items = [stage.pending.popleft() for _ in range(min(batch, len(stage.pending)))]
                stage.waiting_since = time.monotonic()
            else:
                items = [stage.pending.popleft()]
            ref = actor.handle.run.remote(items, batch is not None)
            self._calls[ref] = _Call(stage, actor, items)
            actor.busy += 1
            stage.calls += 1
            stage.in_flight += len(items)
            stage.items_in += len(items)

    @staticmethod
    def _room_downstream(stage: _RayStage) -> bool:
        """The window: no new call while a consumer has its queue's ``maxsize`` items waiting."""
        return all(len(consumer.pending) < maxsize or not consumer.accepts() for consumer, maxsize in stage.consumers)

    def _results(self, refs: list[Any]) -> list[Any]:
        """The results of finished calls: a :class:`CallResult`, or the Ray error the call ended with."""
        try:
            return self._ray.get(refs)  # one round trip for all, when none failed
        except self._ray.exceptions.RayError:
            pass
        outcomes = []
        for ref in refs:
            try:
                outcomes.append(self._ray.get(ref))
            except self._ray.exceptions.RayError as exc:
                outcomes.append(exc)
        return outcomes

    def _answer(self, call: _Call, result: Any) -> None:
        stage, actor = call.stage, call.actor
        actor.busy -= 1
        stage.calls -= 1
        stage.in_flight -= len(call.items)
        if isinstance(result, self._ray.exceptions.RayActorError):
            self._actor_died(call, result)
            return
        if isinstance(result, self._ray.exceptions.RayError):  # a BaseException in the worker, outputs that cannot travel
            cause = getattr(result, "cause", None) or result
            for item in call.items:
                stage.fail(item, type(cause).__name__, one_line(describe(cause), 1000))
            return
        if actor.pid and result.pid != actor.pid:
            stage.restarts += 1
            log.warning("%s: Ray restarted an actor whose process ended (%d/%d)", stage.name, stage.restarts,
                        stage.config.max_restarts)
        actor.pid = result.pid
        if result.build_error is not None:
            self._build_failed(stage, call.items, result.build_error)
            return
        stage.counter_totals.update(result.counters)
        for item, error_type, message in result.failures:
            stage.fail(item, error_type, message)
        stage.items_out += len(result.outputs)
        for consumer, _ in stage.consumers:
            consumer.add(result.outputs)

    def _build_failed(self, stage: _RayStage, items: list[Any], error: str) -> None:
        """As a thread that cannot build its worker: the items wait for another call; the stage dies after max_restarts."""
        stage.items_in -= len(items)
        stage.put_back(items)
        if stage.restarts < stage.config.max_restarts:
            stage.restarts += 1
            log.warning("%s: %s; trying again (%d/%d)", stage.name, error, stage.restarts, stage.config.max_restarts)
        elif stage.dead_reason is None:
            self._stage_died(stage, f"stage {stage.name} died: {error} (after {_restarts(stage.restarts)})")

    def _actor_died(self, call: _Call, exc: BaseException) -> None:
        """The actor's process died with the call, and Ray did not run it again: its items failed.

        The actor is gone for good when Ray could not restart it (max_restarts used up, or it cannot
        be built); a call that only found it unavailable (restarting) leaves it in the pool.
        """
        stage, actor = call.stage, call.actor
        error = one_line(describe(exc), 300)
        for item in call.items:
            if not call.closing:
                stage.fail(item, type(exc).__name__, f"the actor's process died: {error}")
        if not isinstance(exc, self._ray.exceptions.ActorDiedError):
            return
        if not actor.dead:
            actor.dead = True
            if call.closing:
                stage.fail(None, type(exc).__name__, f"close() did not end: the actor's process died: {error}")
        if all(a.dead for a in stage.actors) and stage.dead_reason is None:
            self._stage_died(stage, f"stage {stage.name} died: {error} (every actor, after {_restarts(stage.restarts)})")

    def _stage_died(self, stage: _RayStage, reason: str) -> None:
        log.error("%s", reason)
        stage.die(reason)
        self._stop_upstream(stage, f"stopped because {reason}")

    def _stop_upstream(self, stage: _RayStage, reason: str) -> None:
        # Producers feeding a dead stage would only make items nobody takes.
        for producer in stage.producers:
            if producer.stop_reason is None and not producer.finished:
                producer.stop(reason)
                self._stop_upstream(producer, reason)

    def _maybe_end(self, stage: _RayStage) -> None:
        """A stage whose producers have ended, with nothing waiting or in flight, closes its workers, then ends."""
        if stage.finished or stage.calls or stage.pending or not all(p.finished for p in stage.producers):
            return
        live = [a for a in stage.actors if not a.dead]
        if not stage.closing and live:
            stage.closing = True
            for actor in live:
                ref = actor.handle.close.remote()
                self._calls[ref] = _Call(stage, actor, [], closing=True)
                actor.busy += 1
                stage.calls += 1
            return
        stage.ended_at = time.monotonic()
        for actor in stage.actors:
            self._kill(actor)

    def _kill(self, actor: _Actor) -> None:
        if not actor.dead:
            actor.dead = True
            try:
                self._ray.kill(actor.handle, no_restart=True)
            except Exception as exc:  # already gone with its node: nothing to let go
                log.debug("letting an actor go: %s", describe(exc))


def _restarts(count: int) -> str:
    return f"{count} restart{'s' if count != 1 else ''}"
